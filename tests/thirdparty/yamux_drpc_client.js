// A dRPC client whose yamux multiplexer is a third-party implementation
// (yamux-js, "fully interoperable" with hashicorp/yamux), for the tests:
//   node yamux_drpc_client.js <port>   with a JSON plan on stdin:
//   [{"rpc": "/pkg.Svc/Method", "request": "<hex>"}, ...]
// Every call runs at once, each on its own yamux stream (as Coder's
// drpcsdk does); prints [{"response": "<hex>"} | {"code": n, "error": s}].
'use strict';
const net = require('net');
const {Client} = require('yamux-js');

function varint(n) {
  const out = [];
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128); }
  out.push(n);
  return Buffer.from(out);
}

function frame(kind, sid, mid, data) {
  return Buffer.concat([Buffer.from([(kind << 1) | 1]), varint(sid), varint(mid),
    varint(data.length), data]);
}

function readVarint(buf, pos) {
  let value = 0, mul = 1;
  for (;;) {
    if (pos >= buf.length) return null;
    const b = buf[pos++];
    value += (b & 0x7f) * mul;
    mul *= 128;
    if (b < 0x80) return [value, pos];
  }
}

function call(session, rpc, request) {
  return new Promise((resolve) => {
    const stream = session.open();
    let buf = Buffer.alloc(0);
    const parts = [];
    let done = false;
    const finish = (result) => { if (!done) { done = true; stream.end(); resolve(result); } };
    stream.on('error', (err) => finish({code: -1, error: String(err)}));
    stream.on('end', () => finish({code: -1, error: 'stream ended'}));
    stream.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (buf.length < 1) return;
        let p = readVarint(buf, 1); if (!p) return;
        p = readVarint(buf, p[1]); if (!p) return;
        p = readVarint(buf, p[1]); if (!p) return;
        const [len, start] = p;
        if (buf.length < start + len) return;
        const kind = (buf[0] >> 1) & 0x3f, last = buf[0] & 1;
        parts.push(buf.subarray(start, start + len));
        buf = buf.subarray(start + len);
        if (!last) continue;
        const data = Buffer.concat(parts.splice(0));
        if (kind === 2) finish({response: data.toString('hex')});
        else if (kind === 3) finish({code: Number(data.readBigUInt64BE(0)),
          error: data.subarray(8).toString()});
        else if (kind === 6) finish({code: -1, error: 'no response'});
      }
    });
    stream.write(Buffer.concat([
      frame(1, 1, 1, Buffer.from(rpc)),
      frame(2, 1, 2, Buffer.from(request, 'hex')),
      frame(6, 1, 3, Buffer.alloc(0)),
    ]));
  });
}

async function main() {
  const port = Number(process.argv[2]);
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const plan = JSON.parse(input);
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((ok, fail) => { socket.on('connect', ok); socket.on('error', fail); });
  const session = new Client({enableKeepAlive: false});
  session.on('error', (err) => { console.error('yamux error', err); process.exit(2); });
  socket.pipe(session).pipe(socket);
  const results = await Promise.all(plan.map((c) => call(session, c.rpc, c.request)));
  process.stdout.write(JSON.stringify(results));
  socket.end();
  socket.destroy();
}

main().catch((err) => { console.error(err); process.exit(1); });
