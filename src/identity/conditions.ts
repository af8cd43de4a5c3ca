// Kubernetes-style status conditions of a MeshIdentity.

export type ConditionType = 'Provider' | 'MeshTrustCreated' | 'Ready';

export interface Condition {
  type: ConditionType;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export const condition = (type: ConditionType, ok: boolean | 'unknown', reason: string, message: string): Condition => ({
  type,
  status: ok === 'unknown' ? 'Unknown' : ok ? 'True' : 'False',
  reason,
  message,
});
