// Dataplane: only its labels matter here (what MeshIdentity selectors match and templates read).
import { field, index, Issues, readLabelMap, readObject } from './validate-common.js';

/**
 * Labels of a Kuma `networking` block: the tags of every inbound, merged in order.
 * Other networking fields are accepted as-is (Kuma Dataplanes carry addresses, ports, …).
 */
export function inboundTags(raw: unknown, path: string, issues: Issues): Record<string, string> {
  const out: Record<string, string> = {};
  const net = readObject(raw, path, issues, 'any');
  if (!net || net.inbound === undefined || net.inbound === null) return out;
  const inPath = field(path, 'inbound');
  if (!Array.isArray(net.inbound)) {
    issues.add(inPath, 'must be a list');
    return out;
  }
  net.inbound.forEach((item: unknown, i) => {
    const ib = readObject(item, index(inPath, i), issues, 'any');
    const tags = ib && readLabelMap(ib.tags, field(index(inPath, i), 'tags'), issues);
    if (tags) Object.assign(out, tags);
  });
  return out;
}
