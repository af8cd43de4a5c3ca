#!/usr/bin/env node
// Lint and type check side by side: each runs on one core, so on two they take the longer one's
// time instead of the sum (~12 s instead of ~22 s here). Their output goes straight through.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './build-js.js';

function run(name, script, args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'node_modules', script), ...args], { cwd: ROOT, stdio: 'inherit' });
    child.on('error', (e) => {
      console.error(`${name}: ${e.message}`);
      resolve(false);
    });
    child.on('close', (code) => {
      if (code !== 0) console.error(`${name} failed (exit code ${code})`);
      resolve(code === 0);
    });
  });
}

const ok = await Promise.all([run('lint', 'eslint/bin/eslint.js', ['.']), run('typecheck', 'typescript/bin/tsc', ['-p', 'tsconfig.json'])]);
process.exit(ok.every(Boolean) ? 0 : 1);
