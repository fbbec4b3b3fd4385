import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MemberSpec } from '../src/members/pool.js';
import { Pool } from '../src/members/pool.js';
import type { PoolConfig } from '../src/config/schema.js';
import {
  createMemberSource,
  DnsSource,
  EtcdSource,
  FileSource,
  HttpSource,
  parseMemberList,
  StaticSource,
  type MemberSource,
} from '../src/discovery/index.js';

/** Poll `cond` until it holds or `ms` passes (never a blind sleep). */
async function waitFor(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function ids(specs: readonly MemberSpec[] | undefined): string[] {
  return (specs ?? []).map((s) => `${s.host}:${s.port}*${s.weight}`).sort();
}

/** A started source that records what it hands out. */
async function record(src: MemberSource): Promise<{ lists: MemberSpec[][]; errors: Error[]; latest: () => string[] }> {
  const lists: MemberSpec[][] = [];
  const errors: Error[] = [];
  await src.start(
    (s) => lists.push(s),
    (e) => errors.push(e),
  );
  return { lists, errors, latest: () => ids(lists.at(-1)) };
}

/** Replace `file` atomically (write a temp file, rename over): readers see old or new, never half. */
async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'homing-discovery-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('parseMemberList', () => {
  test('accepts "host:port" strings, { address, weight } objects and a { members } wrapper', () => {
    const raw = ['10.0.0.1:80', { address: '[::1]:8080', weight: 3 }, { address: 'b.example:81' }];
    assert.deepEqual(parseMemberList(raw, 'x'), [
      { host: '10.0.0.1', port: 80, weight: 1 },
      { host: '::1', port: 8080, weight: 3 },
      { host: 'b.example', port: 81, weight: 1 },
    ]);
    assert.deepEqual(parseMemberList({ members: ['a:1'] }, 'x'), [{ host: 'a', port: 1, weight: 1 }]);
  });

  test('a bad entry is named by source and index', () => {
    assert.throws(() => parseMemberList(['a:1', 'nope'], 'members.yaml'), /members\.yaml: \[1\]: invalid address "nope"/);
    assert.throws(() => parseMemberList(['a:1', 'a:99999'], 'f'), /f: \[1\]: port out of range/);
    assert.throws(() => parseMemberList([{ address: 'a:1', weight: 0 }], 'f'), /f: \[0\]\.weight: expected an integer 1\.\.1000/);
    assert.throws(() => parseMemberList([{ address: 'a:1', wieght: 2 }], 'f'), /f: \[0\]: unknown key "wieght"/);
    assert.throws(() => parseMemberList([42], 'f'), /f: \[0\]: expected "host:port"/);
    assert.throws(() => parseMemberList({ a: 1 }, 'f'), /f: expected a list of members/);
  });
});

describe('StaticSource and createMemberSource', () => {
  test('static members are handed out once, as configured', async () => {
    const src = createMemberSource({ members: [{ host: '127.0.0.1', port: 9101, weight: 1 }, { host: '127.0.0.1', port: 9102, weight: 2 }] } as PoolConfig);
    assert.ok(src instanceof StaticSource);
    const r = await record(src);
    assert.deepEqual(r.latest(), ['127.0.0.1:9101*1', '127.0.0.1:9102*2']);
    assert.equal(r.lists.length, 1);
    await src.stop();
  });

  test('file, dns, http and etcd discovery get their source', () => {
    assert.ok(createMemberSource({ discovery: { file: '/tmp/x.yaml' } } as PoolConfig) instanceof FileSource);
    assert.ok(createMemberSource({ discovery: { dns: { name: 'x.example', type: 'SRV', interval: 1000 } } } as PoolConfig) instanceof DnsSource);
    assert.ok(createMemberSource({ discovery: { http: { url: 'http://127.0.0.1:1/m', interval: 1000 } } } as PoolConfig) instanceof HttpSource);
    assert.ok(createMemberSource({ discovery: { etcd: { endpoints: [{ host: '127.0.0.1', port: 2379 }], prefix: '/m/' } } } as PoolConfig) instanceof EtcdSource);
    assert.throws(() => createMemberSource({ discovery: { dns: { name: 'x.example', type: 'A', interval: 1000 } } } as PoolConfig), /port is required for A records/);
  });
});

describe('FileSource', () => {
  test('loads a JSON list', async () => {
    const file = join(await tempDir(), 'members.json');
    await writeFile(file, JSON.stringify(['127.0.0.1:9001', { address: '127.0.0.1:9002', weight: 5 }]));
    const src = new FileSource(file, { pollMs: 0 });
    const r = await record(src);
    assert.deepEqual(r.latest(), ['127.0.0.1:9001*1', '127.0.0.1:9002*5']);
    await src.stop();
  });

  test('loads a YAML list, and feeds a Pool', async () => {
    const file = join(await tempDir(), 'members.yaml');
    await writeFile(file, '- 127.0.0.1:9001\n- { address: "127.0.0.1:9002", weight: 2 }\n- address: "[::1]:9003"\n');
    const src = new FileSource(file, { pollMs: 0 });
    const pool = new Pool('p');
    await src.start((s) => pool.setMembers(s), (e) => assert.fail(e));
    assert.deepEqual(pool.members.members.map((m) => `${m.id}*${m.weight}`), ['127.0.0.1:9001*1', '127.0.0.1:9002*2', '[::1]:9003*1']);
    await src.stop();
  });

  test('an edit in place applies without a restart (directory watch)', async () => {
    const file = join(await tempDir(), 'members.yaml');
    await writeFile(file, '- 127.0.0.1:9001\n');
    const src = new FileSource(file, { pollMs: 0, debounceMs: 20 }); // no poll: only the watcher can see it
    const r = await record(src);
    // In place: truncate, then write. A read caught in between sees an empty file, which is
    // refused (reported, last list kept) — so only the final list is asserted here.
    await writeFile(file, '- 127.0.0.1:9001\n- 127.0.0.1:9002\n');
    await waitFor(() => r.latest().length === 2, 'the edit to apply');
    assert.deepEqual(r.latest(), ['127.0.0.1:9001*1', '127.0.0.1:9002*1']);
    assert.ok(r.lists.every((l) => l.length > 0), 'never an empty list');
    await src.stop();
  });

  test('a write-to-temp + rename over the file applies (editors, ConfigMaps)', async () => {
    const dir = await tempDir();
    const file = join(dir, 'members.json');
    await writeFile(file, '["127.0.0.1:9001"]');
    const src = new FileSource(file, { pollMs: 0, debounceMs: 20 });
    const r = await record(src);
    for (const port of [9005, 9006]) {
      const tmp = join(dir, `.members.json.${port}.tmp`);
      await writeFile(tmp, JSON.stringify([`127.0.0.1:${port}`]));
      await rename(tmp, file);
      await waitFor(() => r.latest()[0] === `127.0.0.1:${port}*1`, `rename #${port} to apply`);
    }
    assert.deepEqual(r.lists.map(ids), [['127.0.0.1:9001*1'], ['127.0.0.1:9005*1'], ['127.0.0.1:9006*1']]);
    await src.stop();
  });

  test('the poll alone catches an edit when watching is off', async () => {
    const file = join(await tempDir(), 'members.yaml');
    await writeFile(file, '- 127.0.0.1:9001\n');
    const src = new FileSource(file, { pollMs: 30, watch: false });
    const r = await record(src);
    await writeFile(file, '- 127.0.0.1:9009\n');
    await waitFor(() => r.latest()[0] === '127.0.0.1:9009*1', 'the poll to pick up the edit');
    await src.stop();
  });

  test('a bad edit keeps the last good list and reports the error once; a fix applies again', async () => {
    const file = join(await tempDir(), 'members.yaml');
    await writeFile(file, '- 127.0.0.1:9001\n- 127.0.0.1:9002\n');
    const src = new FileSource(file, { pollMs: 25, debounceMs: 10 });
    const r = await record(src);
    await replaceFile(file, '- 127.0.0.1:9001\n- not-an-address\n');
    await waitFor(() => r.errors.length > 0, 'the error to be reported');
    assert.match(r.errors[0]!.message, new RegExp(`member file ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\[1\\]: invalid address "not-an-address"`));
    // Several polls of the same bad file: still one report, and the good list stands.
    const polls = Date.now();
    await waitFor(() => Date.now() - polls > 150, 'a few polls');
    assert.equal(r.errors.length, 1);
    assert.equal(r.lists.length, 1);
    assert.deepEqual(r.latest(), ['127.0.0.1:9001*1', '127.0.0.1:9002*1']);
    // Broken YAML and an empty (half-written) file are refused the same way.
    await replaceFile(file, '- [unclosed\n');
    await waitFor(() => r.errors.length === 2, 'the YAML error');
    assert.match(r.errors[1]!.message, /invalid YAML/);
    await replaceFile(file, '');
    await waitFor(() => r.errors.length === 3, 'the empty-file error');
    assert.match(r.errors[2]!.message, /file is empty/);
    assert.equal(r.lists.length, 1);
    await replaceFile(file, '- 127.0.0.1:9003\n');
    await waitFor(() => r.latest()[0] === '127.0.0.1:9003*1', 'the fixed file to apply');
    await src.stop();
  });

  test('a missing file makes start reject, naming the file', async () => {
    const file = join(await tempDir(), 'nope.yaml');
    const src = new FileSource(file);
    await assert.rejects(src.start(() => assert.fail('no members expected'), () => {}), (e: Error) => {
      assert.ok(e.message.includes(file), e.message);
      assert.match(e.message, /cannot read: ENOENT/);
      return true;
    });
    // Once the file is there, the same source can be started.
    await writeFile(file, '- 127.0.0.1:9001\n');
    const r = await record(src);
    assert.deepEqual(r.latest(), ['127.0.0.1:9001*1']);
    await src.stop();
  });

  test('an invalid file makes start reject, naming the file and the entry', async () => {
    const file = join(await tempDir(), 'members.json');
    await writeFile(file, '["127.0.0.1:1", {"address": "127.0.0.1:2", "weight": 0}]');
    const src = new FileSource(file);
    await assert.rejects(src.start(() => {}, () => {}), (e: Error) => e.message.includes(file) && /\[1\]\.weight/.test(e.message));
    await src.stop();
  });

  test('nothing is delivered after stop', async () => {
    const file = join(await tempDir(), 'members.yaml');
    await writeFile(file, '- 127.0.0.1:9001\n');
    const src = new FileSource(file, { pollMs: 20, debounceMs: 5 });
    const r = await record(src);
    await src.stop();
    await writeFile(file, '- 127.0.0.1:9002\n');
    const t = Date.now();
    await waitFor(() => Date.now() - t > 120, 'a few would-be polls');
    assert.equal(r.lists.length, 1);
  });
});

describe('HttpSource', () => {
  let body = '["127.0.0.1:9001"]';
  let status = 200;
  let hits = 0;
  let server: Server;
  const sockets = new Set<NetSocket>();

  async function listen(): Promise<string> {
    server = createServer((_req, res) => {
      hits++;
      res.writeHead(status, { 'content-type': 'application/json' }).end(body);
    });
    server.on('connection', (sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/members`;
  }
  after(() => {
    server?.closeAllConnections();
    server?.close();
  });

  test('loads, picks up changes on the poll, keeps the last good list on a 500 or bad JSON', async () => {
    const url = await listen();
    const src = new HttpSource(url, { intervalMs: 25, timeoutMs: 2000 });
    const r = await record(src);
    assert.deepEqual(r.latest(), ['127.0.0.1:9001*1']);
    body = JSON.stringify({ members: ['127.0.0.1:9001', { address: '127.0.0.1:9002', weight: 4 }] });
    await waitFor(() => r.latest().length === 2, 'the new list');
    assert.deepEqual(r.latest(), ['127.0.0.1:9001*1', '127.0.0.1:9002*4']);
    status = 500;
    await waitFor(() => r.errors.length === 1, 'the 500 to be reported');
    assert.match(r.errors[0]!.message, new RegExp(`discovery url ${url}: HTTP 500`));
    status = 200;
    body = '{not json';
    await waitFor(() => r.errors.length === 2, 'the bad JSON to be reported');
    assert.match(r.errors[1]!.message, /invalid JSON/);
    assert.deepEqual(r.latest(), ['127.0.0.1:9001*1', '127.0.0.1:9002*4']);
    await src.stop();
    // A poll sent just before stop may still be on its way in: let its connection finish first.
    await waitFor(() => sockets.size === 0, 'the last poll connection to close');
    const seen = hits;
    const t = Date.now();
    await waitFor(() => Date.now() - t > 100, 'would-be polls');
    assert.equal(hits, seen, 'no poll after stop');
  });

  test('a failing first load rejects, naming the URL', async () => {
    status = 503;
    const src = new HttpSource(`http://127.0.0.1:${(server.address() as AddressInfo).port}/m`, { intervalMs: 1000, timeoutMs: 2000 });
    await assert.rejects(src.start(() => {}, () => {}), /discovery url http:\/\/127\.0\.0\.1:\d+\/m: HTTP 503/);
    await src.stop();
    status = 200;
  });
});

/** A tiny authoritative DNS server on UDP port 0: answers A and SRV from a mutable table. */
class TinyDns {
  readonly a = new Map<string, string[]>();
  readonly srv = new Map<string, { priority: number; weight: number; port: number; target: string }[]>();
  private sock: Socket = createSocket('udp4');

  async start(): Promise<string> {
    this.sock.on('message', (msg, rinfo) => {
      const reply = this.answer(msg);
      if (reply) this.sock.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', r));
    return `127.0.0.1:${this.sock.address().port}`;
  }

  close(): void {
    this.sock.close();
  }

  private answer(q: Buffer): Buffer | undefined {
    let off = 12;
    const labels: string[] = [];
    while (off < q.length && q[off]! !== 0) {
      const len = q[off]!;
      labels.push(q.subarray(off + 1, off + 1 + len).toString('ascii'));
      off += 1 + len;
    }
    off += 1;
    const qtype = q.readUInt16BE(off);
    const qEnd = off + 4;
    const name = labels.join('.').toLowerCase();
    const answers: Buffer[] = [];
    if (qtype === 1) {
      for (const ip of this.a.get(name) ?? []) answers.push(rr(1, Buffer.from(ip.split('.').map(Number))));
    } else if (qtype === 33) {
      for (const s of this.srv.get(name) ?? []) {
        const fixed = Buffer.alloc(6);
        fixed.writeUInt16BE(s.priority, 0);
        fixed.writeUInt16BE(s.weight, 2);
        fixed.writeUInt16BE(s.port, 4);
        answers.push(rr(33, Buffer.concat([fixed, encodeName(s.target)])));
      }
    }
    const known = this.a.has(name) || this.srv.has(name);
    const header = Buffer.alloc(12);
    q.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(known ? 0x8580 : 0x8583, 2); // response, authoritative, RD, RA; NXDOMAIN if unknown
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    return Buffer.concat([header, q.subarray(12, qEnd), ...answers]);
  }
}

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

function rr(type: number, rdata: Buffer): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0xc00c, 0); // pointer to the question's name
  b.writeUInt16BE(type, 2);
  b.writeUInt16BE(1, 4); // IN
  b.writeUInt32BE(0, 6); // TTL
  b.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([b, rdata]);
}

describe('DnsSource (against a real UDP DNS server)', () => {
  const dns = new TinyDns();
  let server = '';
  after(() => dns.close());

  test('A records on the configured port, re-resolved on the interval; a failing look-up keeps the list', async () => {
    server ||= await dns.start();
    dns.a.set('backends.test', ['10.0.0.1', '10.0.0.2']);
    const src = new DnsSource({ name: 'backends.test', type: 'A', port: 8080, intervalMs: 25, servers: [server] });
    const r = await record(src);
    assert.deepEqual(r.latest(), ['10.0.0.1:8080*1', '10.0.0.2:8080*1']);
    dns.a.set('backends.test', ['10.0.0.2', '10.0.0.3']);
    await waitFor(() => r.latest().includes('10.0.0.3:8080*1'), 'the re-resolved list');
    assert.deepEqual(r.latest(), ['10.0.0.2:8080*1', '10.0.0.3:8080*1']);
    dns.a.delete('backends.test');
    await waitFor(() => r.errors.length === 1, 'the NXDOMAIN to be reported');
    assert.match(r.errors[0]!.message, /discovery dns A backends\.test: ENOTFOUND/);
    assert.deepEqual(r.latest(), ['10.0.0.2:8080*1', '10.0.0.3:8080*1']);
    await src.stop();
  });

  test('SRV records: lowest priority only, port and weight from the record', async () => {
    server ||= await dns.start();
    dns.srv.set('_http._tcp.svc.test', [
      { priority: 10, weight: 5, port: 9001, target: 'a.svc.test' },
      { priority: 10, weight: 0, port: 9002, target: 'b.svc.test' },
      { priority: 20, weight: 1, port: 9003, target: 'backup.svc.test' },
    ]);
    const src = new DnsSource({ name: '_http._tcp.svc.test', type: 'SRV', intervalMs: 1000, servers: [server] });
    const r = await record(src);
    assert.deepEqual(r.latest(), ['a.svc.test:9001*5', 'b.svc.test:9002*1']);
    await src.stop();
  });

  test('an unknown name makes start reject, naming it', async () => {
    server ||= await dns.start();
    const src = new DnsSource({ name: 'missing.test', type: 'A', port: 1, intervalMs: 1000, servers: [server] });
    await assert.rejects(src.start(() => {}, () => {}), /discovery dns A missing\.test: ENOTFOUND/);
    await src.stop();
  });
});
