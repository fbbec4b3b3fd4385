// Peer (a floor, not a proxy anyone would run): the least an HTTP/1.1 proxy on Node does with the
// parser homing's fast engine uses. llhttp (Node's own, through the binding node:http drives) reads
// both sockets itself; one backend connection per client connection; each head written again from
// its parsed fields; an answer leaves in one write. No routing, no header rules, no timeouts, no
// pool, no metrics: what homing's engine: fast adds over it is the price of being a router.
// Usage (forked by bench/run.mjs): node-llhttp.mjs <backendPort>; sends {type:'ready', port}.
import { createRequire } from 'node:module';
import net from 'node:net';

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common');
const backendPort = Number(process.argv[2]);
const RESOURCE = {};

function parser(type, socket) {
  const p = new HTTPParser();
  p.initialize(type, RESOURCE, 16 * 1024, HTTPParser.kLenientNone);
  // A parse error (or a pause) ends the connection.
  p[HTTPParser.kOnExecute] = (r) => {
    if (typeof r !== 'number') socket.destroy();
  };
  p[HTTPParser.kOnMessageComplete] = () => {};
  return p;
}

function headLines(h) {
  let s = '';
  for (let i = 0; i < h.length; i += 2) s += `${h[i]}: ${h[i + 1]}\r\n`;
  return s;
}

const server = net.createServer((client) => {
  client.setNoDelay(true);
  const member = net.connect({ host: '127.0.0.1', port: backendPort, noDelay: true });
  const cp = parser(HTTPParser.REQUEST, client);
  const mp = parser(HTTPParser.RESPONSE, client);
  let head = '';
  let body = [];
  cp[HTTPParser.kOnHeadersComplete] = (_major, _minor, h, method, url) => {
    member.write(`${methods[method]} ${url} HTTP/1.1\r\n${headLines(h)}\r\n`, 'latin1');
    return 0;
  };
  cp[HTTPParser.kOnBody] = (b) => member.write(b);
  mp[HTTPParser.kOnHeadersComplete] = (_major, _minor, h, _method, _url, status, message) => {
    head = `HTTP/1.1 ${status} ${message}\r\n${headLines(h)}\r\n`;
    return 0;
  };
  mp[HTTPParser.kOnBody] = (b) => body.push(b);
  mp[HTTPParser.kOnMessageComplete] = () => {
    let n = Buffer.byteLength(head, 'latin1');
    for (const b of body) n += b.length;
    const out = Buffer.allocUnsafe(n);
    let at = out.write(head, 0, 'latin1');
    for (const b of body) at += b.copy(out, at);
    client.write(out);
    head = '';
    body = [];
  };
  cp.consume(client._handle);
  member.once('connect', () => mp.consume(member._handle));
  for (const [a, b] of [[client, member], [member, client]]) {
    a.on('error', () => b.destroy());
    a.on('close', () => b.destroy());
  }
});
server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: server.address().port }));
process.on('disconnect', () => process.exit(0));
