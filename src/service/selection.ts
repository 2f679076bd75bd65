// VM selection: which VMs a job protects, decided against the inventory as it is when the job
// runs (src/vsphere placement, read through src/jobs).
//
// Vocabulary
// - rule: one entry of `vms.include` / `vms.exclude`:
//     `NAME` or `name:PATTERN`  the VM's name (glob: `*` any text, `?` one character)
//     `folder:PATH`             the VM's folder or any folder below it (`DC0/vm/Prod`, globs allowed)
//     `host:PATTERN`            the ESXi host it runs on
//     `cluster:PATTERN`         the cluster of that host
//     `pool:PATTERN`            its resource pool or any pool above it
//     `datastore:PATTERN`       a datastore holding any of its files
//     `attribute:NAME=PATTERN`  a custom attribute's value
//     `moref:vm-N`              one VM by managed object id
// - selected: matched by at least one include rule and by no exclude rule. Each VM at most
//   once, in name order.
// - disk exclusions: per VM name pattern, device keys a job never copies; a VM left with no
//   disk is excluded (reason given).
import type { VmPlacement } from '../vsphere/vsphere.ts';
import type { VmSelection } from './config.ts';

export const ruleKinds = ['name', 'folder', 'host', 'cluster', 'pool', 'datastore', 'attribute', 'moref'] as const;
export type RuleKind = (typeof ruleKinds)[number];

export interface VmRule {
  kind: RuleKind;
  /** The rule as written. */
  text: string;
  /** Glob (or moref) the rule's value is matched with. */
  pattern: string;
  /** attribute: the attribute's name. */
  attribute?: string;
}

/** A rule as written, or why it is not one. */
export function parseVmRule(text: string): VmRule | string {
  const match = /^([a-z]+):(.*)$/.exec(text);
  if (!match || !(ruleKinds as readonly string[]).includes(match[1])) {
    if (text.trim() === '') return 'an empty rule selects nothing';
    return { kind: 'name', text, pattern: text };
  }
  const kind = match[1] as RuleKind;
  const value = match[2];
  if (value === '') return `"${text}" needs a value after "${kind}:"`;
  if (kind === 'attribute') {
    const at = value.indexOf('=');
    if (at <= 0) return `"${text}" wants attribute:NAME=PATTERN`;
    return { kind, text, attribute: value.slice(0, at), pattern: value.slice(at + 1) };
  }
  if (kind === 'folder') return { kind, text, pattern: value.replace(/\/+$/, '') };
  return { kind, text, pattern: value };
}

const globCache = new Map<string, RegExp>();

/** Whether `text` matches a glob (`*` any text, `?` one character), whole and case-sensitive. */
export function globMatch(pattern: string, text: string): boolean {
  let re = globCache.get(pattern);
  if (!re) {
    const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    globCache.set(pattern, (re = new RegExp(`^${source}$`, 's')));
  }
  return re.test(text);
}

export function ruleMatches(rule: VmRule, vm: VmPlacement): boolean {
  const any = (values: readonly (string | undefined)[]) => values.some((v) => v !== undefined && globMatch(rule.pattern, v));
  switch (rule.kind) {
    case 'name':
      return globMatch(rule.pattern, vm.vm.name);
    case 'moref':
      return vm.vm.moref.value === rule.pattern;
    case 'folder': {
      // The folder itself or any folder below it.
      const parts = vm.folderPath.split('/');
      return parts.some((_, i) => globMatch(rule.pattern, parts.slice(0, i + 1).join('/')));
    }
    case 'host':
      return any([vm.host]);
    case 'cluster':
      return any([vm.cluster]);
    case 'pool':
      return any(vm.resourcePools);
    case 'datastore':
      return any(vm.datastores);
    case 'attribute':
      return rule.attribute !== undefined && rule.attribute in vm.attributes && globMatch(rule.pattern, vm.attributes[rule.attribute] as string);
  }
}

export interface SelectedVm {
  placement: VmPlacement;
  /** Device keys to copy; undefined: every disk. */
  diskKeys: number[] | undefined;
  /** Device keys left out by `excludeDisks`. */
  excludedDiskKeys: number[];
}

export interface SelectionResult {
  selected: SelectedVm[];
  /** VMs an include rule matched that were left out, and why. */
  excluded: Array<{ name: string; moref: string; reason: string }>;
}

/** Applies a job's selection to the inventory. */
export function selectVms(inventory: readonly VmPlacement[], selection: VmSelection): SelectionResult {
  const selected: SelectedVm[] = [];
  const excluded: SelectionResult['excluded'] = [];
  const seen = new Set<string>();
  const sorted = [...inventory].sort((a, b) => a.vm.name.localeCompare(b.vm.name) || a.vm.moref.value.localeCompare(b.vm.moref.value));
  for (const placement of sorted) {
    const { vm } = placement;
    if (seen.has(vm.moref.value)) continue;
    if (!selection.include.some((rule) => ruleMatches(rule, placement))) continue;
    seen.add(vm.moref.value);
    const by = selection.exclude.find((rule) => ruleMatches(rule, placement));
    if (by) {
      excluded.push({ name: vm.name, moref: vm.moref.value, reason: `excluded by "${by.text}"` });
      continue;
    }
    const excludedDiskKeys = [...new Set(selection.excludeDisks.filter((d) => globMatch(d.vm, vm.name)).flatMap((d) => d.diskKeys))].sort((a, b) => a - b);
    if (excludedDiskKeys.length === 0) {
      selected.push({ placement, diskKeys: undefined, excludedDiskKeys });
      continue;
    }
    const diskKeys = vm.disks.map((d) => d.key).filter((key) => !excludedDiskKeys.includes(key));
    if (diskKeys.length === 0) {
      excluded.push({ name: vm.name, moref: vm.moref.value, reason: `every disk is excluded (excludeDisks: ${excludedDiskKeys.join(', ')})` });
      continue;
    }
    selected.push({ placement, diskKeys, excludedDiskKeys });
  }
  return { selected, excluded };
}
