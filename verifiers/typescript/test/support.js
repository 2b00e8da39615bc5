// The shared vectors (verifiers/vectors.json, written by `cargo run -p link-contract --example vectors`) and a
// local fake STS: it answers POST / carrying the vector's expected headers and body with the vector's answer, and
// anything else with SignatureDoesNotMatch, as STS does; it counts requests.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

export const VECTORS = JSON.parse(readFileSync(new URL('../../vectors.json', import.meta.url), 'utf8'));
export const bodyOf = (v) => (v.bodyBase64 !== undefined ? Buffer.from(v.bodyBase64, 'base64') : Buffer.from(v.body, 'utf8'));

const MISMATCH = '<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>'
  + '<Message>not the request that was signed</Message></Error></ErrorResponse>';

export async function startFakeSts() {
  const fake = { answer: null, hits: 0, url: '' };
  const server = createServer((req, res) => {
    fake.hits += 1;
    const sts = fake.answer;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const want = sts?.request ?? { headers: {}, body: '' };
      const asSigned = sts !== null && req.method === 'POST' && req.url === '/' && body === want.body
        && Object.entries(want.headers).every(([k, v]) => req.headers[k] === v);
      const [status, headers, text] = asSigned ? [sts.status, sts.headers, sts.body] : [403, { 'content-type': 'text/xml' }, MISMATCH];
      res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text), connection: 'close' });
      res.end(text);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${server.address().port}/`;
  fake.serve = (answer) => {
    fake.answer = answer;
    fake.hits = 0;
  };
  fake.close = () => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  });
  return fake;
}
