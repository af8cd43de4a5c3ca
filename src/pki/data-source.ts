// Resolves a MeshIdentity SecureDataSource (CA certificate or key) to its text.
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { SecureDataSource } from '../api/types.js';

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
      if (!isAbsolute(path)) throw new DataSourceError(`file ${JSON.stringify(path)}: path must be absolute`);
      try {
        return await readFile(path, 'utf8');
      } catch (e) {
        throw new DataSourceError(`file ${JSON.stringify(path)} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
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
