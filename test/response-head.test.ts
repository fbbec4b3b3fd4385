/**
 * The response-head phase's one pass over a member's head: what it removes (hop-by-hop, dropped
 * and backend-protocol headers, whatever their case or length) and what it passes untouched,
 * including lines as long as a removed one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memberHead } from '../src/proxy/response-head.js';

const LONG_DROPPED = 'x-internal-principal-corporation-id'; // 35 chars: the mask's shared top bit
const LONG_KEPT = 'x-some-very-long-application-header-name'; // longer than 31 too, not dropped

test('memberHead removes every hop-by-hop, dropped and protocol header, and only those', () => {
  const raw = [
    'Content-Type', 'text/plain', // 12
    'Content-Length', '5', // 14, as long as http2-settings
    'HTTP2-Settings', 'AAMAAABkAAQAAP__', // 14, hop-by-hop
    'Date', 'Mon, 30 Nov 2026 05:00:00 GMT',
    'Connection', 'keep-alive, X-Nominated',
    'Keep-Alive', 'timeout=5',
    'TE', 'trailers',
    'Trailer', 'x-t',
    'Upgrade', 'h2c',
    'Proxy-Connection', 'keep-alive',
    'Proxy-Authenticate', 'Basic',
    'X-Nominated', 'gone',
    'X-Accel-Redirect', '/elsewhere',
    'X-Owner', '10.0.0.7:8080',
    'X-Region', 'eu-1',
    LONG_DROPPED.toUpperCase(), 'secret',
    LONG_KEPT, 'kept',
    'ETag', '"v1"',
  ];
  const h = memberHead(raw, 'x-accel-redirect', 'x-owner', new Set(['x-region', LONG_DROPPED]));
  assert.deepEqual(h.headers, [
    'Content-Type', 'text/plain',
    'Content-Length', '5',
    'Date', 'Mon, 30 Nov 2026 05:00:00 GMT',
    LONG_KEPT, 'kept',
    'ETag', '"v1"',
  ]);
  assert.equal(h.redirect, '/elsewhere');
  assert.equal(h.owner, '10.0.0.7:8080');
  assert.equal(h.foreignCoding, false);
});

test('memberHead: a Transfer-Encoding other than chunked is flagged; Buffers read as latin1', () => {
  const h = memberHead([Buffer.from('Transfer-Encoding'), Buffer.from('gzip, chunked'), Buffer.from('X-A'), Buffer.from([0xe9])], 'x-accel-redirect', undefined, new Set());
  assert.equal(h.foreignCoding, true);
  assert.deepEqual(h.headers, ['X-A', '\u00e9']);
});
