// Peer (a floor, not a proxy anyone would run): a TCP relay on Node's `net`, one backend connection
// per client connection, bytes passed on unread. No HTTP at all: what the least a Node process does
// per request costs here (two reads, two writes, the event loop), against which the HTTP peers'
// CPU per request is read.
// Usage (forked by bench/run.mjs): node-relay.mjs <backendPort>; sends {type:'ready', port}.
import net from 'node:net';

const backendPort = Number(process.argv[2]);
const server = net.createServer((client) => {
  client.setNoDelay(true);
  const member = net.connect({ host: '127.0.0.1', port: backendPort, noDelay: true });
  client.on('data', (d) => member.write(d));
  member.on('data', (d) => client.write(d));
  for (const [a, b] of [[client, member], [member, client]]) {
    a.on('error', () => b.destroy());
    a.on('close', () => b.destroy());
  }
});
server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: server.address().port }));
process.on('disconnect', () => process.exit(0));
