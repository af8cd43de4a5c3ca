// Secret payloads: Universal `data: <base64>`, Kubernetes `data.value` (base64) or `stringData.value`.
import { field, Issues, readObject } from './validate-common.js';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function decodeBase64Field(raw: unknown, path: string, issues: Issues): Buffer | undefined {
  if (raw === undefined || raw === null || raw === '') {
    issues.add(path, 'must not be empty');
    return undefined;
  }
  if (typeof raw !== 'string') {
    issues.add(path, 'must be a base64 string');
    return undefined;
  }
  const compact = raw.replace(/\s+/g, '');
  if (!BASE64.test(compact)) {
    issues.add(path, 'must be valid base64');
    return undefined;
  }
  return Buffer.from(compact, 'base64');
}

export function kubernetesSecretData(doc: Record<string, unknown>, issues: Issues): Buffer | undefined {
  // Other keys of `data`/`stringData` are allowed (a Kubernetes Secret may hold more); only `value` is used.
  const data = readObject(doc.data, 'data', issues, 'any');
  const stringData = readObject(doc.stringData, 'stringData', issues, 'any');
  if (stringData && stringData.value !== undefined && stringData.value !== null) {
    if (typeof stringData.value !== 'string') {
      issues.add(field('stringData', 'value'), 'must be a string');
      return undefined;
    }
    return Buffer.from(stringData.value, 'utf8');
  }
  if (data && data.value !== undefined) return decodeBase64Field(data.value, field('data', 'value'), issues);
  issues.add(field('data', 'value'), 'must be defined (or stringData.value)');
  return undefined;
}
