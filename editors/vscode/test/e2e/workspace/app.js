// The node program of the end-to-end test. Run under tether, it sees the target's environment,
// reads a file only the target has and calls a service only the target's network reaches. It
// writes what it saw to out/node.json (or out/ARG1), then stays up until the debugger stops it.
const fs = require('fs');
const http = require('http');
const path = require('path');

const out = path.join(__dirname, 'out', process.argv[2] ?? 'node.json');
const result = { pid: process.pid, greeting: process.env.POD_GREETING ?? null };
try {
  result.file = fs.readFileSync('/app/message.txt', 'utf8');
} catch (e) {
  result.fileError = String(e);
}

function done() {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(`${out}.tmp`, JSON.stringify(result, null, 2));
  fs.renameSync(`${out}.tmp`, out);
  console.log(`wrote ${out}`);
  setTimeout(() => {}, 10 * 60 * 1000);
}

http
  .get('http://web.svc.cluster.local/', { timeout: 10000 }, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => {
      result.http = body;
      done();
    });
  })
  .on('error', (e) => {
    result.httpError = String(e);
    done();
  });
