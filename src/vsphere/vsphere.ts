// vsphere: the control plane. A vim25 SOAP client written for this project.
//
// Vocabulary
// - Server: a vCenter or ESXi SDK endpoint, `https://host[:port]/sdk`; messages name it `host:port`.
// - Session (session.ts): one logged-in connection: TLS checked before any byte is sent
//   (tls.ts), cookie `vmware_soap_session`, timeouts, retries of idempotent reads,
//   transparent re-login, keep-alive. Every call goes through `session.call`.
// - MoRef: a managed object reference `{type, value}` (`VirtualMachine`/`vm-10`).
// - Fault: an error the server reports; VsphereFault keeps its vim25 type (errors.ts lists codes).
// - Property collector (property-collector.ts): how objects' properties are read, paged.
// - Task (tasks.ts): a long server operation (`*_Task`), waited for by polling.
// - Disk: a VirtualDisk device, named by its device key (2000, 2001, ...).
// - ChangeId: the CBT position on a disk backing, `<epoch>/<sequence>`; `*` asks for allocated areas.
// - Changed areas (changed-areas.ts): byte extents (src/extents) that changed since a ChangeId.
//
// Layering: xml → soap/decode → session → property-collector/tasks → inventory, snapshots,
// cbt, changed-areas. This file is the public surface; import from here.

export { connect, sdkUrlOf, VsphereSession, SESSION_COOKIE, type ConnectOptions, type ServiceContent, type CallOptions, type SessionScope } from './session.ts';
export { moRef, type MoRef } from './decode.ts';
export {
  VsphereError,
  VsphereFault,
  ChangeIdInvalidError,
  TlsError,
  isVsphereFault,
  describeTarget,
  type Target,
} from './errors.ts';
export { CheckedAgent, connectChecked, parseFingerprint, peerFingerprints, type SeenFingerprints, type TlsPolicy } from './tls.ts';
export {
  findVm,
  readVm,
  listVms,
  parseVmSelector,
  readSnapshotDisks,
  diskByKey,
  datacenterOf,
  datastoreName,
  type VmInfo,
  type VmIdentity,
  type VmSelector,
  type VirtualDiskInfo,
  type PowerState,
} from './inventory.ts';
export { waitForTask, runTask, type TaskProgress } from './tasks.ts';
export {
  createSnapshot,
  removeSnapshot,
  listSnapshots,
  findLeftoverSnapshots,
  withSnapshot,
  isOurs,
  renameSnapshot,
  serverTime,
  snapshotDescription,
  parseSnapshotOwner,
  SNAPSHOT_NAME_PREFIX,
  SNAPSHOT_MARKER,
  type SnapshotInfo,
  type CreateSnapshotOptions,
  type SnapshotOwner,
} from './snapshots.ts';
export { createVm, newVmSpec, resolvePlacement as resolvePlacementNear, datastoreFreeSpace, type NewVmOptions, type VmPlacementSpec, type PlacementRequest } from './create-vm.ts';
export { growDisk } from './grow-disk.ts';
export { readExtraConfig, setExtraConfig, extraConfigSpec } from './extra-config.ts';
export { enableCbt, disableCbt, resetCbt, type CbtOptions } from './cbt.ts';
export { queryChangedAreas, changeIdEpoch, ALLOCATED_AREAS, type ChangedAreasQuery } from './changed-areas.ts';
export { listVmPlacements, type VmPlacement } from './placement.ts';
export {
  readVmConfig,
  decodeVmConfig,
  listNetworks,
  type VmConfiguration,
  type VmControllerConfig,
  type VmDiskConfig,
  type VmNicConfig,
  type VmNetworkRef,
  type VmOtherDeviceConfig,
  type NetworkInfo,
  type Firmware,
  type DiskProvisioning,
} from './vm-config.ts';
export { buildOvfDescriptor, STREAM_OPTIMIZED_FORMAT, OVF_NAMESPACE, type OvfDisk, type OvfOptions } from './ovf.ts';
export {
  createImportSpec,
  importVApp,
  waitForLease,
  leaseState,
  leaseProgress,
  leaseComplete,
  leaseAbort,
  uploadToLease,
  type ImportTarget,
  type ImportSpec,
  type ImportSpecParams,
  type LeaseDevice,
  type ReadyLease,
} from './nfc.ts';
export { resolvePlacement, vmNamed, type ImportPlacementRequest, type ResolvedPlacement } from './import-target.ts';
export { applyConfiguration, powerOnVm, destroyVm, copiedExtraConfig, skippedExtraConfig } from './vm-reconfigure.ts';
