// Resolves a MeshIdentity SecureDataSource (CA certificate or key) to its text.
import { isAbsolute } from 'node:path';
import { readResourceText } from '../api/file-text.js';
import { valueForMessage } from '../api/secret-text.js';
import type { SecureDataSource } from '../api/types.js';

/** A CA certificate (with its chain) or key is a few KiB: anything past this is not one. */
export const MAX_DATA_SOURCE_FILE_BYTES = 1024 * 1024;

export class DataSourceError extends Error {
  override readonly name = 'DataSourceError';
}

export interface DataSourceContext {
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Looks up a `Secret` resource of the same mesh by name. */
  secret?: (name: string) => Buffer | undefined;
}

export async function resolveDataSource(ds: SecureDataSource, ctx: DataSourceContext = {}): Promise<string> {
  switch (ds.type) {
    case 'File': {
      const path = ds.file.path;
      // A key pasted into `path` (meant for InsecureInline) is described, never quoted into a condition.
      if (!isAbsolute(path)) throw new DataSourceError(`file ${valueForMessage(path)}: path must be absolute`);
      // Read like a resource file: a FIFO or a device (the path is written by whoever writes the
      // resource) is refused instead of blocking a libuv thread or being read without end, and
      // nothing past the limit is held.
      const read = await readResourceText(path, path, MAX_DATA_SOURCE_FILE_BYTES, '');
      if ('text' in read) return read.text;
      throw new DataSourceError(`file ${valueForMessage(path)} cannot be read: ${read.error.message.replace(/^cannot read file: /, '')}`);
    }
    case 'EnvVar': {
      const value = (ctx.env ?? process.env)[ds.envVar.name];
      if (value === undefined || value === '') throw new DataSourceError(`environment variable ${ds.envVar.name} is not set`);
      return value;
    }
    case 'InsecureInline':
      return ds.insecureInline.value;
    case 'Secret': {
      const name = ds.secretRef.name;
      const value = ctx.secret?.(name);
      if (value === undefined) throw new DataSourceError(`secret ${JSON.stringify(name)} not found`);
      return value.toString('utf8');
    }
    default:
      throw new DataSourceError(`unknown data source type ${JSON.stringify((ds as { type?: unknown }).type)}`);
  }
}
