// A reporter for Node's test runner that writes nothing while the tests run and, at the end, one
// block per failed test: its file, its name path and its error. `scripts/test.mjs` sends it to a
// file and prints every pass's blocks after the last pass, so a failure is in the last lines of a
// long run's output (where a CI log cut to its tail still shows it), not only thousands of lines
// up in the TAP stream.
import { inspect } from 'node:util';

export default async function* failures(source) {
  const open = new Map(); // per file: the name of each open test or suite, by nesting level
  const blocks = [];
  for await (const event of source) {
    if (event.type === 'test:start') {
      const names = open.get(event.data.file) ?? [];
      names[event.data.nesting] = event.data.name;
      names.length = event.data.nesting + 1;
      open.set(event.data.file, names);
    } else if (event.type === 'test:fail') {
      const { data } = event;
      const error = data.details?.error;
      // A suite fails when a test in it fails: that test has its own block.
      if (error?.failureType === 'subtestsFailed') continue;
      const names = open.get(data.file) ?? [];
      const path = [...names.slice(0, data.nesting), data.name].join(' › ');
      const shown = inspect(error?.cause ?? error, { depth: 4, breakLength: 120 });
      const lines = shown.split('\n');
      const text = lines.length > 40 ? [...lines.slice(0, 40), `  … ${lines.length - 40} more lines`].join('\n') : shown;
      blocks.push(`✖ ${data.file ?? '(no file)'}\n  ${path}\n${text.replace(/^/gm, '    ')}\n`);
    }
  }
  if (blocks.length > 0) yield blocks.join('\n');
}
