import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { request } from 'undici';
import { startBackend, startTestHoming } from './support/backends.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function makeCert(): { dir: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'homing-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  return { dir, cert, key };
}

function httpsGet(port: number, path: string, ca: Buffer): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('TLS termination alongside plain HTTP: real HTTPS requests, X-Forwarded-Proto https', async () => {
  const b = await startBackend('b');
  cleanups.push(() => b.close());
  const { dir, cert, key } = makeCert();
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const yaml = `
listen: { http: 127.0.0.1:0, https: { address: 127.0.0.1:0, cert: ${cert}, key: ${key} } }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: r, pool: p } ]
`;
  writeFileSync(join(dir, 'homing.yaml'), yaml);
  const h = await startTestHoming(yaml);
  cleanups.push(() => h.close());
  const r = await httpsGet(h.https!.port, '/secure', readFileSync(cert));
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/secure');
  assert.equal(b.last!.headers['x-forwarded-proto'], 'https');
  const plain = await request(`${h.url}/plain`);
  assert.equal(plain.statusCode, 200);
  await plain.body.text();
  assert.equal(b.last!.headers['x-forwarded-proto'], 'http');
  // An untrusted certificate is refused by a verifying client: it really is TLS with our cert.
  await assert.rejects(httpsGet(h.https!.port, '/', Buffer.from('')));
});
