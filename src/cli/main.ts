#!/usr/bin/env node
/**
 * The `homing` command: argument parsing → load config → wire → start. No logic of its own.
 *
 *   homing serve -c homing.yaml     run (workers: auto forks one process per core)
 *   homing check homing.yaml        validate and print a summary
 *   homing demo [--port 8080] [--admin-port 9090]   demo backends + homing (npm start)
 *   homing ring …                   where keys land, and what moves when members change
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { VERSION } from '../version.js';
import { serve } from './serve.js';
import { parseDemoArgs, runDemo } from './demo.js';
import { summarize } from './summary.js';
import { ringCommand } from './ring.js';

const USAGE = `homing ${VERSION} — router and reverse proxy for stateful backends

usage:
  homing serve -c <config.yaml>      run the proxy (admin, RESP and workers as configured)
  homing check <config.yaml>         validate a config and print a summary (exit 1 if invalid)
  homing demo [--port 8080] [--admin-port 9090]
                                     demo backends + homing on 127.0.0.1 (0: any free port)
  homing ring --members a:1,b:2 [--algorithm ring|maglev|rendezvous] [--key K…] [--remove a:1] [--add c:3] [--keys 100000]
  homing --version
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, allowPositionals: true });
      const file = values.config ?? rest.find((a) => !a.startsWith('-'));
      if (!file) {
        process.stderr.write('homing serve: missing -c <config.yaml>\n');
        return 2;
      }
      await serve(loadConfigFile(file));
      return -1; // keep running
    }
    case 'check': {
      const file = rest.find((a) => !a.startsWith('-'));
      if (!file) {
        process.stderr.write('homing check: missing <config.yaml>\n');
        return 2;
      }
      const cfg = loadConfigFile(file);
      process.stdout.write(summarize(cfg) + '\n' + `${file}: OK\n`);
      return 0;
    }
    case 'demo': {
      const demo = await runDemo(parseDemoArgs(rest));
      const h = demo.homing;
      const base = `http://127.0.0.1:${h.http!.port}`;
      process.stdout.write(
        `\nhoming demo is running.\n` +
          `  proxy   ${base}   (hash route /documents/<id>, round-robin on everything else)\n` +
          `  admin   http://127.0.0.1:${h.adminAddress!.port}/status   /metrics   /api/v1/pools\n` +
          `  backends ${demo.backends.map((b) => `127.0.0.1:${(b.address() as { port: number }).port}`).join(', ')}\n\n` +
          `try:\n  curl -i ${base}/documents/42\n  curl -s 'http://127.0.0.1:${h.adminAddress!.port}/api/v1/routes/documents/lookup?key=42'\n\n`,
      );
      const stop = (): void => {
        void demo.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1;
    }
    case 'ring':
      return ringCommand(rest);
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
      const n = err.problems.length;
      const file = err.details[0]?.file;
      process.stderr.write(`${err.problems.join('\n')}\n${file ? `${file}: ` : ''}${n === 1 ? '1 problem' : `${n} problems`}\n`);
    }
    // The message is for the user; the stack only when asked for (HOMING_DEBUG=1).
    else process.stderr.write(`homing: ${process.env.HOMING_DEBUG ? ((err as Error)?.stack ?? String(err)) : ((err as Error)?.message ?? String(err))}\n`);
    process.exit(1);
  },
);
