#!/usr/bin/env node
/**
 * The `homing` command: argument parsing → load config → wire → start. No logic of its own.
 *
 *   homing serve -c homing.yaml     run (workers: auto forks one process per core)
 *   homing check homing.yaml        validate (every problem at once) and print a summary
 *   homing demo [--port 8080] [--admin-port 9090] [--resp-port 6380]   demo backends + homing (npm start)
 *   homing ring …                   where keys land, and what moves when members change
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, describeProblems, loadConfigFile } from '../config/load.js';
import { VERSION } from '../version.js';
import { serve } from './serve.js';
import { parseDemoArgs, runDemo } from './demo.js';
import { summarize } from './summary.js';
import { ringCommand } from './ring.js';

/** Each command's synopsis and what it does: `homing <command> --help` prints its own. */
const COMMANDS = {
  serve: ['homing serve -c <config.yaml>', 'run the proxy (admin, RESP and workers as configured); the config is validated first, as by check'],
  check: ['homing check <config.yaml>', 'validate a config and print a summary; exit 1 with every problem, each as file:line:column key: message'],
  demo: ['homing demo [--port 8080] [--admin-port 9090] [--resp-port 6380]', 'demo backends + homing on 127.0.0.1 (0: any free port)'],
  ring: [
    'homing ring (--members a:1,b:2 | -c <config.yaml> [--pool <name>]) [--algorithm ring|maglev|rendezvous]\n' +
      '            [--vnodes 160] [--key K]… [--remove a:1]… [--add c:3]… [--keys 100000]',
    'which member each key maps to, and what moves when members are removed or added',
  ],
} as const;

type Command = keyof typeof COMMANDS;

const USAGE = `homing ${VERSION} — router and reverse proxy for stateful backends

usage:
${Object.values(COMMANDS)
  .map(([synopsis, about]) => `  ${synopsis}\n      ${about}\n`)
  .join('')}  homing <command> --help
  homing --version
`;

function usage(cmd: Command): string {
  const [synopsis, about] = COMMANDS[cmd];
  return `usage: ${synopsis}\n\n${about}\n`;
}

/** A command's arguments; undefined (after saying why, with its usage) when they do not parse. */
function args<O extends ParseArgsConfig['options']>(cmd: Command, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true });
  } catch (e) {
    process.stderr.write(`homing ${cmd}: ${(e as Error).message}\n${usage(cmd)}`);
    return undefined;
  }
}

/** The config file of `serve` and `check`: `-c <file>` or the one positional argument. */
function configFile(cmd: Command, argv: string[]): string | undefined {
  const parsed = args(cmd, argv, { config: { type: 'string', short: 'c' } });
  if (!parsed) return undefined;
  const file = parsed.values.config ?? parsed.positionals[0];
  if (!file) process.stderr.write(`homing ${cmd}: missing the config file\n${usage(cmd)}`);
  return file;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== undefined && Object.hasOwn(COMMANDS, cmd) && rest.some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(usage(cmd as Command));
    return 0;
  }
  switch (cmd) {
    case 'serve': {
      const file = configFile(cmd, rest);
      if (!file) return 2;
      await serve(file);
      return -1; // keep running
    }
    case 'check': {
      const file = configFile(cmd, rest);
      if (!file) return 2;
      const cfg = loadConfigFile(file);
      process.stdout.write(summarize(cfg) + '\n' + `${file}: OK\n`);
      return 0;
    }
    case 'demo': {
      const demo = await runDemo(parseDemoArgs(rest));
      const h = demo.homing;
      const base = `http://127.0.0.1:${h.http!.port}`;
      // The guide that follows (printed by the demo) shows each pattern working.
      process.stdout.write(
        `\nhoming demo is running.\n` +
          `  proxy   ${base}   (every pattern: see the guide below)\n` +
          `  admin   http://127.0.0.1:${h.adminAddress!.port}/status   /metrics   /api/v1/pools   (dashboard at /)\n` +
          `  backends ${demo.backends.map((b) => `127.0.0.1:${(b.address() as { port: number }).port}`).join(', ')}\n` +
          `  try     curl -i ${base}/documents/42\n`,
      );
      const stop = (): void => {
        void demo.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1;
    }
    case 'ring': {
      const code = ringCommand(rest);
      if (code === 2) process.stderr.write(usage(cmd));
      return code;
    }
    case '--version':
    case '-v':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`homing: unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      // Every problem on its own line (file:line:column key: message), then how many there are.
      process.stderr.write(`${describeProblems(err.problems, err.details[0]?.file)}\n`);
    }
    // The message is for the user; the stack only when asked for (HOMING_DEBUG=1).
    else process.stderr.write(`homing: ${process.env.HOMING_DEBUG ? ((err as Error)?.stack ?? String(err)) : ((err as Error)?.message ?? String(err))}\n`);
    process.exit(1);
  },
);
