// Peer: the `http-proxy` npm package, one process, keep-alive agent to the backend.
// Usage (forked by bench/run.mjs): http-proxy.mjs <backendPort>; sends {type:'ready', port}.
import http from 'node:http';
import httpProxy from 'http-proxy';

const target = `http://127.0.0.1:${Number(process.argv[2])}`;
const agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 60_000 });
const proxy = httpProxy.createProxyServer({ target, agent });
proxy.on('error', (err, _req, res) => {
  if (res && typeof res.writeHead === 'function' && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`bad gateway: ${err.code ?? err.message}\n`);
  } else res?.destroy?.();
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  if (process.send) process.send({ type: 'ready', port });
  else console.log(`http-proxy listening on 127.0.0.1:${port} → ${target}`);
});
process.on('disconnect', () => process.exit(0));
