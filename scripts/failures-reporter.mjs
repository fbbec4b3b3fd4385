// A reporter for Node's test runner that writes nothing while the tests run and, at the end, one
// block per failed test: its file, its name path and its error. `scripts/test.mjs` sends it to a
// file and prints every pass's blocks after the last pass, so a failure is in the last lines of a
// long run's output (where a CI log cut to its tail still shows it), not only thousands of lines
// up in the TAP stream. A test file that failed as a whole (it crashed, or failed outside any
// test) gets the last lines its process wrote to stderr; tests cancelled because their suite
// failed are counted, not listed.
import { inspect } from 'node:util';

const STDERR_LINES = 30;

export default async function* failures(source) {
  const open = new Map(); // per file: the name of each open test or suite, by nesting level
  const stderr = new Map(); // per file: its last lines on stderr
  const blocks = [];
  let cancelled = 0;
  for await (const event of source) {
    const { data } = event;
    if (event.type === 'test:start') {
      const names = open.get(data.file) ?? [];
      names[data.nesting] = data.name;
      names.length = data.nesting + 1;
      open.set(data.file, names);
    } else if (event.type === 'test:stderr') {
      const lines = stderr.get(data.file) ?? [];
      lines.push(...String(data.message).replace(/\n$/, '').split('\n'));
      stderr.set(data.file, lines.slice(-STDERR_LINES));
    } else if (event.type === 'test:fail') {
      const error = data.details?.error;
      // A suite fails when a test in it fails: that test has its own block.
      if (error?.failureType === 'subtestsFailed') continue;
      if (error?.failureType === 'cancelledByParent') {
        cancelled++;
        continue;
      }
      const names = open.get(data.file) ?? [];
      const path = [...names.slice(0, data.nesting), data.name].join(' › ');
      const shown = inspect(error?.cause ?? error, { depth: 4, breakLength: 120 });
      const lines = shown.split('\n');
      let text = lines.length > 40 ? [...lines.slice(0, 40), `  … ${lines.length - 40} more lines`].join('\n') : shown;
      const wholeFile = data.file !== undefined && data.name === data.file;
      if (wholeFile && stderr.has(data.file)) text += `\nits stderr, last lines:\n${stderr.get(data.file).join('\n')}`;
      blocks.push(`✖ ${data.file ?? '(no file)'}\n  ${path}\n${text.replace(/^/gm, '    ')}\n`);
    }
  }
  if (cancelled > 0) blocks.push(`(${cancelled} more test(s) cancelled because their suite failed)\n`);
  if (blocks.length > 0) yield blocks.join('\n');
}
