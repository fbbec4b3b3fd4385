/**
 * Fails the test file when any promise rejection went unhandled while it ran (code under test
 * that drops a rejection would otherwise pass, and only crash in production).
 */
import { after } from 'node:test';
import assert from 'node:assert/strict';

export function failOnUnhandledRejections(): void {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  process.on('unhandledRejection', onUnhandled);
  after(() => {
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, [], 'no unhandled rejection in any test');
  });
}
