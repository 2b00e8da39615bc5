// The package as a user gets it: packed, installed from the tarball into an empty project (offline: it has no
// dependencies), imported by its name, with its declarations; nothing of the tests is shipped.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { VECTORS } from './support.js';

const here = fileURLToPath(new URL('..', import.meta.url));
const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8' });

test('the packed package installs and imports by its name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'account-link-verify-'));
  try {
    const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], here));
    const files = packed.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['README.md', 'index.d.ts', 'index.js', 'lib/core.js', 'lib/partitions.js',
      'lib/reassembler.js', 'lib/sts.js', 'package.json']);
    writeFileSync(join(dir, 'package.json'), '{"name": "receiver", "private": true, "type": "module"}');
    npm(['install', '--offline', join(dir, packed.filename)], dir);
    const out = execFileSync(process.execPath, ['--input-type=module', '-e',
      "import * as m from 'account-link-verify'; console.log(typeof m.verify, typeof m.verifySns, typeof m.Reassembler, m.REASONS.length)"],
    { cwd: dir, encoding: 'utf8' });
    assert.equal(out.trim(), `function function function ${VECTORS.reasons.length}`);
    assert.ok(existsSync(join(dir, 'node_modules/account-link-verify/index.d.ts')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
