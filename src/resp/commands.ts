/**
 * The commands the RESP router answers, and the metadata `COMMAND` reports so that
 * redis-cli, redis-benchmark and client libraries are comfortable talking to homing.
 *
 * `runCommand` is the hot path: `GET` is matched before anything else, a synchronous look-up is
 * answered without a promise, and the encoded `$len\r\nhost:port\r\n` reply of each target is
 * cached (targets are a small set: the members of the pools).
 *
 * Arguments and replies are byte strings (see codec.ts): keys and names go to the backend through
 * textOf(), and anything the backend says comes back through bytesOf().
 */
import type { RespBackend } from './backend.js';
import {
  REPLY_EMPTY_ARRAY,
  REPLY_NIL,
  REPLY_OK,
  REPLY_PONG,
  arrayReply,
  bulkArrayReply,
  bulkReply,
  bytesOf,
  errorReply,
  integerReply,
  simpleReply,
  textOf,
} from './codec.js';

/** The Redis version homing claims in INFO and HELLO: the command set and replies follow Redis 7.0. */
export const CLAIMED_REDIS_VERSION = '7.0.0';

/** What a command may do to the connection that sent it (implemented by the server's client). */
export interface Session {
  readonly id: number;
  /** Index into backend.routes chosen by SELECT. */
  db: number;
  /** CLIENT SETNAME. */
  name: string | null;
  /** Queue an encoded reply, in request order. */
  reply(encoded: string): void;
  /** Queue a reply that is not known yet; later replies wait behind it. */
  replyLater(pending: Promise<string>): void;
  /** Send what is queued, then close (QUIT). */
  closeAfterReplies(): void;
  /** Close at once without a reply (HTTP at the RESP port). */
  drop(reason: string): void;
  /** For CLIENT INFO / LIST. */
  describe(): string;
}

/** Counters and settings INFO reports, owned by the server. */
export interface ServerStats {
  connectedClients: number;
  totalConnections: number;
  rejectedConnections: number;
  totalCommands: number;
  protocolErrors: number;
  /** Connections closed because their unread output passed maxOutputBuffer. */
  outputLimitCloses: number;
  /** Connections closed because a request passed a size limit (maxQueryBuffer, bulk or line length). */
  queryLimitCloses: number;
  /** Connections closed because all clients' buffers together passed maxTotalBuffer. */
  evictedClients: number;
  /** Connections closed by the idle timeout. */
  idleCloses: number;
  readonly startedAt: number;
  port: number;
  readonly maxClients: number;
  /** Idle timeout in ms (0: none). */
  readonly idleTimeout: number;
}

/** Everything a command can reach besides its session. */
export interface CommandHost {
  readonly backend: RespBackend;
  readonly stats: ServerStats;
  /** Memory held for all clients' unparsed input and unsent output, for INFO. */
  readonly buffered: number;
  /** All sessions, for CLIENT LIST. */
  sessions(): Iterable<Session>;
}

/** Cache of encoded bulk replies for look-up answers (bounded; cleared when full). */
const TARGET_CACHE_MAX = 4096;
const targetReplies = new Map<string, string>();

function targetReply(target: string): string {
  let r = targetReplies.get(target);
  if (r === undefined) {
    if (targetReplies.size >= TARGET_CACHE_MAX) targetReplies.clear();
    r = bulkReply(bytesOf(target));
    targetReplies.set(target, r);
  }
  return r;
}

function settledTarget(target: string | null | undefined): string {
  return target === null || target === undefined ? REPLY_NIL : targetReply(target);
}

/** An error's message as a byte string for an error reply. */
export function messageOf(err: unknown): string {
  return bytesOf(err instanceof Error ? err.message || err.name : String(err));
}

function wrongArity(name: string): string {
  return errorReply(`wrong number of arguments for '${name}' command`);
}

/** Redis 7's unknown-command error: the name and the first arguments, 128 characters at most each. */
function unknownCommand(args: readonly string[]): string {
  let rest = '';
  for (let i = 1; i < args.length && rest.length < 128; i++) rest += `'${args[i]!.slice(0, 128 - rest.length)}' `;
  return errorReply(`unknown command '${args[0]!.slice(0, 128)}', with args beginning with: ${rest}`);
}

function unknownSubcommand(sub: string, cmd: string): string {
  return errorReply(`unknown subcommand '${sub.slice(0, 128)}'. Try ${cmd} HELP.`);
}

/** Strict integer like Redis' string2ll; undefined when not one. */
function parseInteger(s: string): number | undefined {
  if (!/^-?(0|[1-9][0-9]{0,15})$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && !Object.is(n, -0) ? n : undefined;
}

/** `GET / HTTP/1.1` read as an inline command: the third word is the HTTP version. */
function isHttpVersion(s: string): boolean {
  return s.length >= 6 && s.charCodeAt(0) === 72 /* H */ && s.startsWith('HTTP/');
}

/**
 * Runs one command. Replies go through the session (never thrown); an exception escaping from
 * here is a bug, and the server answers it with a generic error.
 */
export function runCommand(host: CommandHost, s: Session, args: string[]): void {
  host.stats.totalCommands++;
  const name = args[0]!;
  if (name === 'GET' || name === 'get') {
    if (args.length === 2) {
      lookupInto(host, s, host.backend.routes[s.db], textOf(args[1]!));
      return;
    }
  }
  // An HTTP request sent to this port (e.g. by SSRF through a proxy) is never
  // answered, so nothing of it can be turned into a Redis conversation. Redis does the same for
  // `POST` and `Host:`; the request line `GET / HTTP/1.1` is caught here before it is answered.
  if (args.length === 3 && isHttpVersion(args[2]!)) {
    s.drop('HTTP request line');
    return;
  }
  const cmd = name.toLowerCase();
  switch (cmd) {
    case 'get':
      s.reply(wrongArity('get'));
      return;
    case 'post':
    case 'host:':
      s.drop(`'${cmd}' command`);
      return;
    case 'mget':
      return mget(host, s, args);
    case 'select':
      return select(host, s, args);
    case 'ping':
      if (args.length === 1) s.reply(REPLY_PONG);
      else if (args.length === 2) s.reply(bulkReply(args[1]!));
      else s.reply(wrongArity('ping'));
      return;
    case 'echo':
      s.reply(args.length === 2 ? bulkReply(args[1]!) : wrongArity('echo'));
      return;
    case 'quit':
      s.reply(REPLY_OK);
      s.closeAfterReplies();
      return;
    case 'info':
      s.reply(bulkReply(bytesOf(info(host, args.slice(1).map(textOf)))));
      return;
    case 'command':
      return command(s, args);
    case 'client':
      return client(host, s, args);
    case 'hello':
      return hello(s, args);
    case 'config':
      return config(host, s, args);
    case 'auth':
      s.reply(
        args.length === 2 || args.length === 3
          ? errorReply('AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?')
          : wrongArity('auth'),
      );
      return;
    case 'homing.route':
      if (args.length !== 3) s.reply(wrongArity('homing.route'));
      else lookupInto(host, s, textOf(args[1]!), textOf(args[2]!));
      return;
    case 'homing.members':
      return members(host, s, args);
    default:
      s.reply(unknownCommand(args));
  }
}

/** Answers one look-up: synchronously when the backend does, in order either way. */
function lookupInto(host: CommandHost, s: Session, route: string | undefined, key: string): void {
  if (route === undefined) {
    s.reply(errorReply('no route is configured for the RESP router'));
    return;
  }
  let target: string | null | Promise<string | null>;
  try {
    target = host.backend.lookup(route, key);
  } catch (err) {
    s.reply(errorReply(messageOf(err)));
    return;
  }
  if (typeof target === 'string') s.reply(targetReply(target));
  else if (target === null || target === undefined) s.reply(REPLY_NIL);
  else s.replyLater(Promise.resolve(target).then(settledTarget));
}

function mget(host: CommandHost, s: Session, args: string[]): void {
  if (args.length < 2) {
    s.reply(wrongArity('mget'));
    return;
  }
  const route = host.backend.routes[s.db];
  if (route === undefined) {
    s.reply(errorReply('no route is configured for the RESP router'));
    return;
  }
  const n = args.length - 1;
  const parts: (string | Promise<string>)[] = [];
  let async = false;
  for (let i = 1; i <= n; i++) {
    let target: string | null | Promise<string | null>;
    try {
      target = host.backend.lookup(route, textOf(args[i]!));
    } catch (err) {
      // Look-ups already started may still reject: nobody waits for them now.
      for (const p of parts) if (typeof p !== 'string') p.catch(() => {});
      s.reply(errorReply(messageOf(err)));
      return;
    }
    if (typeof target === 'string') parts.push(targetReply(target));
    else if (target === null || target === undefined) parts.push(REPLY_NIL);
    else {
      async = true;
      parts.push(Promise.resolve(target).then(settledTarget));
    }
  }
  if (!async) s.reply(arrayReply(parts as string[]));
  else s.replyLater(Promise.all(parts).then(arrayReply));
}

function select(host: CommandHost, s: Session, args: string[]): void {
  if (args.length !== 2) {
    s.reply(wrongArity('select'));
    return;
  }
  const n = parseInteger(args[1]!);
  if (n === undefined) {
    s.reply(errorReply('value is not an integer or out of range'));
    return;
  }
  const routes = host.backend.routes.length;
  // With one route (or none) any database is accepted and ignored, so clients and
  // nginx configs that SELECT a fixed database keep working.
  if (n < 0 || (routes > 1 && n >= routes)) {
    s.reply(errorReply('DB index is out of range'));
    return;
  }
  s.db = routes > 1 ? n : 0;
  s.reply(REPLY_OK);
}

function members(host: CommandHost, s: Session, args: string[]): void {
  if (args.length > 2) {
    s.reply(wrongArity('homing.members'));
    return;
  }
  let list: readonly string[] | undefined;
  try {
    list = args.length === 2 ? host.backend.members(textOf(args[1]!)) : host.backend.members();
  } catch (err) {
    s.reply(errorReply(messageOf(err)));
    return;
  }
  if (list === undefined) s.reply(errorReply(`unknown pool '${args[1]!.slice(0, 128)}'`));
  else s.reply(bulkArrayReply(list.map(bytesOf)));
}

// ---------------------------------------------------------------------------------------------
// INFO

type Section = [name: string, lines: [string, string | number][]];

function infoSections(host: CommandHost): Section[] {
  const st = host.stats;
  const uptime = Math.max(0, Math.floor((Date.now() - st.startedAt) / 1000));
  const routes = host.backend.routes;
  const mem = process.memoryUsage();
  const sections: Section[] = [
    [
      'Server',
      [
        ['redis_version', CLAIMED_REDIS_VERSION],
        ['redis_mode', 'standalone'],
        ['server_name', 'homing'],
        ['os', `${process.platform} ${process.arch}`],
        ['arch_bits', process.arch.endsWith('64') ? 64 : 32],
        ['multiplexing_api', 'libuv'],
        ['process_id', process.pid],
        ['tcp_port', st.port],
        ['uptime_in_seconds', uptime],
        ['uptime_in_days', Math.floor(uptime / 86400)],
        ['node_version', process.versions.node],
      ],
    ],
    [
      'Clients',
      [
        ['connected_clients', st.connectedClients],
        ['maxclients', st.maxClients],
        ['idle_timeout_ms', st.idleTimeout],
      ],
    ],
    [
      'Memory',
      [
        ['used_memory', mem.heapUsed],
        ['used_memory_rss', mem.rss],
        ['mem_clients_normal', host.buffered],
      ],
    ],
    ['Persistence', [['loading', 0]]],
    [
      'Stats',
      [
        ['total_connections_received', st.totalConnections],
        ['total_commands_processed', st.totalCommands],
        ['rejected_connections', st.rejectedConnections],
        ['total_error_replies_protocol', st.protocolErrors],
        ['client_output_limit_disconnections', st.outputLimitCloses],
        ['client_query_buffer_limit_disconnections', st.queryLimitCloses],
        ['evicted_clients', st.evictedClients],
        ['client_idle_disconnections', st.idleCloses],
      ],
    ],
    [
      'Replication',
      [
        ['role', 'master'],
        ['connected_slaves', 0],
      ],
    ],
    ['Keyspace', routes.map((r, i): [string, string] => [`db${i}`, `keys=0,expires=0,avg_ttl=0,route=${r}`])],
  ];
  const extra = host.backend.info?.();
  if (extra) {
    for (const [name, fields] of Object.entries(extra)) sections.push([name, Object.entries(fields)]);
  }
  return sections;
}

const DEFAULT_SECTIONS = new Set(['server', 'clients', 'memory', 'persistence', 'stats', 'replication', 'keyspace']);

function clean(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

function info(host: CommandHost, wanted: string[]): string {
  const names = new Set(wanted.map((w) => w.toLowerCase()));
  const all = names.size === 0 || names.has('all') || names.has('everything');
  const dflt = names.has('default');
  let out = '';
  for (const [name, lines] of infoSections(host)) {
    const key = name.toLowerCase();
    const builtin = DEFAULT_SECTIONS.has(key);
    // No argument: every section (homing's own sections are part of its default output).
    if (!all && !names.has(key) && !(dflt && builtin)) continue;
    if (out !== '') out += '\r\n';
    out += `# ${clean(name)}\r\n`;
    for (const [k, v] of lines) out += `${clean(k)}:${clean(String(v))}\r\n`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// COMMAND, CLIENT, HELLO, CONFIG

interface CommandSpec {
  readonly name: string;
  /** Redis arity: argc including the name; negative means "at least". */
  readonly arity: number;
  readonly flags: readonly string[];
  readonly firstKey: number;
  readonly lastKey: number;
  readonly step: number;
  readonly acl: readonly string[];
  readonly summary: string;
  readonly since: string;
  readonly group: string;
  readonly complexity: string;
  readonly args: readonly { name: string; type: string; optional?: boolean; multiple?: boolean }[];
}

/** What homing answers, described as Redis 7.0 describes its commands. */
export const COMMANDS: readonly CommandSpec[] = [
  { name: 'get', arity: 2, flags: ['readonly', 'fast'], firstKey: 1, lastKey: 1, step: 1, acl: ['@read', '@string', '@fast'], summary: 'The member (host:port) the selected route sends the key to, or nil when it has no live member.', since: '1.0.0', group: 'string', complexity: 'O(1)', args: [{ name: 'key', type: 'key' }] },
  { name: 'mget', arity: -2, flags: ['readonly', 'fast'], firstKey: 1, lastKey: -1, step: 1, acl: ['@read', '@string', '@fast'], summary: 'GET for several keys at once.', since: '1.0.0', group: 'string', complexity: 'O(N) where N is the number of keys', args: [{ name: 'key', type: 'key', multiple: true }] },
  { name: 'select', arity: 2, flags: ['loading', 'stale', 'fast'], firstKey: 0, lastKey: 0, step: 0, acl: ['@keyspace', '@fast', '@connection'], summary: 'Select the n-th route of the RESP router for later GETs.', since: '1.0.0', group: 'connection', complexity: 'O(1)', args: [{ name: 'index', type: 'integer' }] },
  { name: 'ping', arity: -1, flags: ['fast', 'sentinel'], firstKey: 0, lastKey: 0, step: 0, acl: ['@fast', '@connection'], summary: 'Ping the server.', since: '1.0.0', group: 'connection', complexity: 'O(1)', args: [{ name: 'message', type: 'string', optional: true }] },
  { name: 'echo', arity: 2, flags: ['fast'], firstKey: 0, lastKey: 0, step: 0, acl: ['@fast', '@connection'], summary: 'Echo the given string.', since: '1.0.0', group: 'connection', complexity: 'O(1)', args: [{ name: 'message', type: 'string' }] },
  { name: 'quit', arity: -1, flags: ['allow_busy', 'noscript', 'loading', 'stale', 'fast', 'no_auth'], firstKey: 0, lastKey: 0, step: 0, acl: ['@fast', '@connection'], summary: 'Close the connection.', since: '1.0.0', group: 'connection', complexity: 'O(1)', args: [] },
  { name: 'info', arity: -1, flags: ['loading', 'stale', 'sentinel'], firstKey: 0, lastKey: 0, step: 0, acl: ['@slow', '@dangerous'], summary: 'Information and statistics about the router.', since: '1.0.0', group: 'server', complexity: 'O(1)', args: [{ name: 'section', type: 'string', optional: true, multiple: true }] },
  { name: 'command', arity: -1, flags: ['loading', 'stale', 'sentinel'], firstKey: 0, lastKey: 0, step: 0, acl: ['@slow', '@connection'], summary: 'Details about the commands homing answers (COUNT, DOCS, INFO, LIST).', since: '2.8.13', group: 'server', complexity: 'O(N) where N is the number of commands', args: [] },
  { name: 'client', arity: -2, flags: ['loading', 'stale', 'sentinel'], firstKey: 0, lastKey: 0, step: 0, acl: ['@slow', '@connection'], summary: 'Connection commands (ID, INFO, LIST, SETNAME, GETNAME, SETINFO, NO-EVICT, NO-TOUCH).', since: '2.4.0', group: 'connection', complexity: 'O(1)', args: [{ name: 'subcommand', type: 'string' }] },
  { name: 'hello', arity: -1, flags: ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'sentinel', 'allow_busy'], firstKey: 0, lastKey: 0, step: 0, acl: ['@fast', '@connection'], summary: 'Handshake; homing speaks RESP2 only (HELLO 3 answers NOPROTO).', since: '6.0.0', group: 'connection', complexity: 'O(1)', args: [{ name: 'protover', type: 'integer', optional: true }] },
  { name: 'config', arity: -2, flags: ['admin', 'noscript', 'loading', 'stale'], firstKey: 0, lastKey: 0, step: 0, acl: ['@slow'], summary: 'CONFIG GET for the few parameters clients and redis-benchmark read.', since: '2.0.0', group: 'server', complexity: 'O(N) where N is the number of parameters', args: [{ name: 'subcommand', type: 'string' }] },
  { name: 'auth', arity: -2, flags: ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'sentinel', 'allow_busy'], firstKey: 0, lastKey: 0, step: 0, acl: ['@fast', '@connection'], summary: 'homing has no password; AUTH fails as on a Redis without one.', since: '1.0.0', group: 'connection', complexity: 'O(N)', args: [{ name: 'password', type: 'string' }] },
  { name: 'homing.route', arity: 3, flags: ['readonly', 'fast'], firstKey: 2, lastKey: 2, step: 1, acl: ['@read', '@fast'], summary: 'The member (host:port) the named route sends the key to, or nil.', since: '0.1.0', group: 'generic', complexity: 'O(1)', args: [{ name: 'route', type: 'string' }, { name: 'key', type: 'key' }] },
  { name: 'homing.members', arity: -1, flags: ['readonly', 'fast'], firstKey: 0, lastKey: 0, step: 0, acl: ['@read', '@fast'], summary: 'Member ids (host:port) of a pool, or of every pool.', since: '0.1.0', group: 'generic', complexity: 'O(N) where N is the number of members', args: [{ name: 'pool', type: 'string', optional: true }] },
];

const byName = new Map(COMMANDS.map((c) => [c.name, c]));

function statusArray(items: readonly string[]): string {
  return arrayReply(items.map(simpleReply));
}

function commandInfoReply(c: CommandSpec): string {
  return arrayReply([
    bulkReply(c.name),
    integerReply(c.arity),
    statusArray(c.flags),
    integerReply(c.firstKey),
    integerReply(c.lastKey),
    integerReply(c.step),
    statusArray(c.acl),
    REPLY_EMPTY_ARRAY, // tips
    REPLY_EMPTY_ARRAY, // key specs
    REPLY_EMPTY_ARRAY, // subcommands
  ]);
}

function commandDocsReply(c: CommandSpec): string {
  const argDocs = c.args.map((a) => {
    const fields = [bulkReply('name'), bulkReply(a.name), bulkReply('type'), bulkReply(a.type), bulkReply('display_text'), bulkReply(a.name)];
    const flags: string[] = [];
    if (a.optional) flags.push('optional');
    if (a.multiple) flags.push('multiple');
    if (flags.length > 0) fields.push(bulkReply('flags'), statusArray(flags));
    return arrayReply(fields);
  });
  const fields = [
    bulkReply('summary'),
    bulkReply(c.summary),
    bulkReply('since'),
    bulkReply(c.since),
    bulkReply('group'),
    bulkReply(c.group),
    bulkReply('complexity'),
    bulkReply(c.complexity),
  ];
  if (argDocs.length > 0) fields.push(bulkReply('arguments'), arrayReply(argDocs));
  return arrayReply(fields);
}

const ALL_COMMAND_INFO = arrayReply(COMMANDS.map(commandInfoReply));
const ALL_COMMAND_DOCS = arrayReply(COMMANDS.flatMap((c) => [bulkReply(c.name), commandDocsReply(c)]));

function command(s: Session, args: string[]): void {
  if (args.length === 1) {
    s.reply(ALL_COMMAND_INFO);
    return;
  }
  const sub = args[1]!.toLowerCase();
  switch (sub) {
    case 'count':
      s.reply(args.length === 2 ? integerReply(COMMANDS.length) : wrongArity('command|count'));
      return;
    case 'list':
      s.reply(bulkArrayReply(COMMANDS.map((c) => c.name)));
      return;
    case 'info': {
      if (args.length === 2) {
        s.reply(ALL_COMMAND_INFO);
        return;
      }
      const items = args.slice(2).map((n) => {
        const c = byName.get(n.toLowerCase());
        return c ? commandInfoReply(c) : REPLY_NIL;
      });
      s.reply(arrayReply(items));
      return;
    }
    case 'docs': {
      if (args.length === 2) {
        s.reply(ALL_COMMAND_DOCS);
        return;
      }
      const items: string[] = [];
      for (const n of args.slice(2)) {
        const c = byName.get(n.toLowerCase());
        if (c) items.push(bulkReply(c.name), commandDocsReply(c));
      }
      s.reply(arrayReply(items));
      return;
    }
    case 'help':
      s.reply(statusArray(['COMMAND [<subcommand>]', 'COUNT', 'DOCS [<command-name> ...]', 'INFO [<command-name> ...]', 'LIST']));
      return;
    default:
      s.reply(unknownSubcommand(args[1]!, 'COMMAND'));
  }
}

function validClientName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

function client(host: CommandHost, s: Session, args: string[]): void {
  if (args.length < 2) {
    s.reply(wrongArity('client'));
    return;
  }
  const sub = args[1]!.toLowerCase();
  switch (sub) {
    case 'setname': {
      if (args.length !== 3) return s.reply(wrongArity('client|setname'));
      const name = args[2]!;
      if (!validClientName(name)) return s.reply(errorReply('Client names cannot contain spaces, newlines or special characters.'));
      s.name = name === '' ? null : name;
      return s.reply(REPLY_OK);
    }
    case 'getname':
      return s.reply(bulkReply(s.name));
    case 'id':
      return s.reply(integerReply(s.id));
    case 'setinfo':
      return s.reply(args.length === 4 ? REPLY_OK : wrongArity('client|setinfo'));
    case 'no-evict':
    case 'no-touch':
      return s.reply(args.length === 3 ? REPLY_OK : wrongArity(`client|${sub}`));
    case 'info':
      return s.reply(bulkReply(`${s.describe()}\n`));
    case 'list': {
      let out = '';
      for (const other of host.sessions()) out += `${other.describe()}\n`;
      return s.reply(bulkReply(out));
    }
    case 'help':
      return s.reply(statusArray(['CLIENT <subcommand>', 'ID', 'INFO', 'LIST', 'GETNAME', 'SETNAME <name>', 'SETINFO <attr> <value>', 'NO-EVICT (ON|OFF)', 'NO-TOUCH (ON|OFF)']));
    default:
      return s.reply(unknownSubcommand(args[1]!, 'CLIENT'));
  }
}

function hello(s: Session, args: string[]): void {
  let i = 1;
  if (args.length >= 2) {
    const ver = parseInteger(args[1]!);
    if (ver === undefined) return s.reply(errorReply('Protocol version is not an integer or out of range'));
    // RESP3 is not spoken: clients (node-redis, redis-cli -3) fall back to RESP2 on NOPROTO.
    if (ver !== 2) return s.reply(errorReply('unsupported protocol version', 'NOPROTO'));
    i = 2;
  }
  let name: string | null | undefined;
  for (; i < args.length; i++) {
    const opt = args[i]!.toLowerCase();
    if (opt === 'auth' && i + 2 < args.length) i += 2; // no users: accepted as for Redis' nopass default user
    else if (opt === 'setname' && i + 1 < args.length) {
      name = args[++i]!;
      if (!validClientName(name)) return s.reply(errorReply('Client names cannot contain spaces, newlines or special characters.'));
    } else return s.reply(errorReply(`Syntax error in HELLO option '${args[i]!.slice(0, 128)}'`));
  }
  if (name !== undefined) s.name = name === '' ? null : name;
  s.reply(
    arrayReply([
      bulkReply('server'),
      bulkReply('redis'),
      bulkReply('version'),
      bulkReply(CLAIMED_REDIS_VERSION),
      bulkReply('proto'),
      integerReply(2),
      bulkReply('id'),
      integerReply(s.id),
      bulkReply('mode'),
      bulkReply('standalone'),
      bulkReply('role'),
      bulkReply('master'),
      bulkReply('modules'),
      REPLY_EMPTY_ARRAY,
    ]),
  );
}

/** `*` and `?` globs as CONFIG GET takes them. */
function globMatch(pattern: string, s: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return pattern === s;
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(s);
}

function config(host: CommandHost, s: Session, args: string[]): void {
  if (args.length < 2) return s.reply(wrongArity('config'));
  const sub = args[1]!.toLowerCase();
  if (sub !== 'get') {
    if (sub === 'set' || sub === 'resetstat' || sub === 'rewrite') return s.reply(errorReply(`CONFIG ${sub.toUpperCase()} is not supported by homing's RESP router`));
    return s.reply(unknownSubcommand(args[1]!, 'CONFIG'));
  }
  if (args.length < 3) return s.reply(wrongArity('config|get'));
  // What redis-benchmark and client libraries read at start-up.
  const params: [string, string][] = [
    ['save', ''],
    ['appendonly', 'no'],
    ['databases', String(Math.max(1, host.backend.routes.length))],
    ['maxclients', String(host.stats.maxClients)],
    ['timeout', String(Math.floor(host.stats.idleTimeout / 1000))],
    ['port', String(host.stats.port)],
  ];
  const out: string[] = [];
  for (const [k, v] of params) {
    if (args.slice(2).some((p) => globMatch(p.toLowerCase(), k))) out.push(bulkReply(k), bulkReply(v));
  }
  s.reply(arrayReply(out));
}
