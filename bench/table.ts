// One row per scenario, as printed and as stored in bench/results/<timestamp>.json.
export interface Row {
  scenario: string;
  measured: string;
  target: string;
  /** null: reported only, no target. */
  pass: boolean | null;
}

const HEAD: Row = { scenario: 'scenario', measured: 'measured', target: 'target', pass: null };
const W = { scenario: 38, measured: 64, target: 12 };

function line(r: Row, head = false): string {
  const result = head ? 'result' : r.pass === null ? 'report' : r.pass ? 'PASS' : 'FAIL';
  return `${r.scenario.padEnd(W.scenario)} ${r.measured.padEnd(W.measured)} ${r.target.padEnd(W.target)} ${result}`;
}

export function formatTable(rows: Row[], withHeader: boolean): string {
  return [...(withHeader ? [line(HEAD, true), '-'.repeat(W.scenario + W.measured + W.target + 10)] : []), ...rows.map((r) => line(r))].join('\n');
}
