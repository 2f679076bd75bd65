// Which restore points a retention policy keeps (restic's semantics, per VM):
// - keepLast N: the N newest.
// - keepDaily D / keepWeekly W / keepMonthly M: walking from newest to oldest, the newest
//   restore point of each UTC day / ISO week / UTC month, for the D / W / M most recent
//   days / weeks / months that have a restore point.
// A point kept by any rule is kept; each kept point lists the rules that kept it.
import { RepositoryError } from './errors.ts';

export interface RetentionPolicy {
  keepLast: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
}

export interface RetentionCandidate {
  id: string;
  createdAt: string;
  vmId: string;
}

export interface RetentionDecision {
  keep: Array<RetentionCandidate & { reasons: string[] }>;
  remove: RetentionCandidate[];
}

function dayKey(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function isoWeekKey(date: Date): string {
  const day = (date.getUTCDay() + 6) % 7; // Monday = 0
  const thursday = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() - day + 3));
  const year = thursday.getUTCFullYear();
  const week = Math.ceil(((thursday.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

function monthKey(date: Date): string {
  return date.toISOString().slice(0, 7);
}

export function validatePolicy(policy: RetentionPolicy): void {
  for (const [name, value] of Object.entries(policy)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RepositoryError('REPO_INVALID_ARGUMENT', `${name} must be a non-negative integer, got ${value}`, { [name]: value });
  }
  if (policy.keepLast + policy.keepDaily + policy.keepWeekly + policy.keepMonthly === 0) {
    throw new RepositoryError('REPO_INVALID_ARGUMENT', 'a retention policy that keeps nothing would delete every restore point; give at least one keep rule', {});
  }
}

export function applyRetention(points: readonly RetentionCandidate[], policy: RetentionPolicy): RetentionDecision {
  validatePolicy(policy);
  const byVm = new Map<string, RetentionCandidate[]>();
  for (const p of points) byVm.set(p.vmId, [...(byVm.get(p.vmId) ?? []), p]);
  const decision: RetentionDecision = { keep: [], remove: [] };
  for (const group of byVm.values()) {
    const newestFirst = [...group].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
    const reasons = new Map<string, string[]>();
    const mark = (id: string, reason: string) => reasons.set(id, [...(reasons.get(id) ?? []), reason]);
    newestFirst.slice(0, policy.keepLast).forEach((p) => mark(p.id, 'last'));
    const buckets: Array<[string, number, (d: Date) => string]> = [
      ['daily', policy.keepDaily, dayKey],
      ['weekly', policy.keepWeekly, isoWeekKey],
      ['monthly', policy.keepMonthly, monthKey],
    ];
    for (const [rule, count, keyOf] of buckets) {
      let kept = 0;
      let lastKey: string | undefined;
      for (const p of newestFirst) {
        if (kept >= count) break;
        const key = keyOf(new Date(p.createdAt));
        if (key === lastKey) continue;
        lastKey = key;
        kept++;
        mark(p.id, `${rule} ${key}`);
      }
    }
    for (const p of newestFirst) {
      const why = reasons.get(p.id);
      if (why) decision.keep.push({ ...p, reasons: why });
      else decision.remove.push(p);
    }
  }
  return decision;
}
