// A private nginx for the suite: Debian's binary (installed by scripts/ensure-nginx.sh when
// missing), its own config, pid, logs and temp paths under a temp dir, in the foreground
// (`daemon off`) on a loopback port, serving HTTPS with one workload's SVID and requiring client
// certificates from that workload's trust bundle.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, poll, startProc, type Proc } from './procs.js';
import { REPO } from './world.js';

/**
 * The nginx binary, installing it first if needed and possible. Throws (so the nginx tests FAIL,
 * never skip) with the reason when there is none.
 */
export function ensureNginx(): string {
  const find = () => {
    for (const dir of (process.env['PATH'] ?? '').split(':').concat('/usr/sbin', '/usr/local/sbin')) {
      if (dir && existsSync(join(dir, 'nginx'))) return join(dir, 'nginx');
    }
    return undefined;
  };
  const found = find();
  if (found) return found;
  const r = spawnSync('bash', [join(REPO, 'scripts', 'ensure-nginx.sh')], { encoding: 'utf8', timeout: 300_000 });
  const again = find();
  if (r.status !== 0 || !again) {
    throw new Error(`nginx is required by the end-to-end suite and could not be installed (scripts/ensure-nginx.sh exit ${r.status}):\n${(r.stderr ?? '').trim().slice(-2000)}`);
  }
  return again;
}

export interface Nginx {
  proc: Proc;
  port: number;
  conf: string;
  prefix: string;
  /** The command the agent runs after rewriting files (reload only once nginx runs). */
  reloadCommand: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface NginxFiles {
  cert: string;
  key: string;
  bundle: string;
}

export async function prepareNginx(bin: string, dir: string, files: NginxFiles): Promise<Nginx> {
  const prefix = join(dir, 'nginx');
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  const p = (f: string) => join(prefix, f);
  // The body names what nginx saw, so a test can tell which client certificate got in.
  writeFileSync(
    conf,
    `worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} info;
events { worker_connections 128; }
http {
  access_log ${p('access.log')};
  client_body_temp_path ${p('tmp/body')};
  proxy_temp_path ${p('tmp/proxy')};
  fastcgi_temp_path ${p('tmp/fastcgi')};
  uwsgi_temp_path ${p('tmp/uwsgi')};
  scgi_temp_path ${p('tmp/scgi')};
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate ${files.cert};
    ssl_certificate_key ${files.key};
    ssl_client_certificate ${files.bundle};
    ssl_verify_client on;
    ssl_verify_depth 2;
    location / {
      default_type text/plain;
      return 200 "hello verify=$ssl_client_verify serial=$ssl_client_serial\\n";
    }
  }
}
`,
  );
  // Before nginx runs there is nothing to reload; afterwards a failed reload is a real failure.
  const reloadCommand = `if [ -s '${p('nginx.pid')}' ]; then '${bin}' -q -s reload -c '${conf}' -p '${prefix}'; fi`;
  let proc: Proc | undefined;
  const nginx: Nginx = {
    get proc() {
      if (!proc) throw new Error('nginx not started');
      return proc;
    },
    port,
    conf,
    prefix,
    reloadCommand,
    async start() {
      execFileSync(bin, ['-t', '-q', '-c', conf, '-p', prefix], { stdio: 'pipe' });
      proc = startProc('nginx', bin, ['-c', conf, '-p', prefix, '-g', 'daemon off;']);
      await poll(`nginx listening on 127.0.0.1:${port}`, 10_000, async () => {
        if (proc!.child.exitCode !== null) throw new Error(`nginx exited: ${proc!.stderr()}`);
        return existsSync(p('nginx.pid')) && (await canConnect(port)) ? true : undefined;
      }, 50);
    },
    async stop() {
      await proc?.stop('SIGQUIT');
    },
  };
  return nginx;
}

async function canConnect(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
