// Errors raised by the vSphere client. Every message names the server and, where the
// operation concerns one, the VM and disk (the `Target`). Codes are stable:
//
// VSPHERE_FAULT              a vim25 fault (faultType keeps its type name: FileFault, InvalidState, ...)
// VSPHERE_NOT_AUTHENTICATED  NotAuthenticated (SOAP fault or in missingSet) that survived a transparent re-login
// VSPHERE_INVALID_LOGIN      wrong user name or password
// VSPHERE_NO_PERMISSION      NoPermission fault
// VSPHERE_OBJECT_NOT_FOUND   ManagedObjectNotFound (a moref that does not exist, e.g. a removed snapshot)
// CBT_CHANGEID_INVALID       a --since ChangeId the server does not accept (FileFault/InvalidArgument,
//                            or an epoch that differs from the disk's): read the allocated areas instead
// CBT_NOT_ENABLED            CBT is off on the VM, or the disk has no ChangeId
// CBT_QUERY_NO_PROGRESS      QueryChangedDiskAreas answered a zero or misplaced window (would loop forever)
// VSPHERE_BAD_RESPONSE       the server's answer is not what the API promises (missing field, bad number)
// VSPHERE_UNREACHABLE        no TCP/TLS connection (refused, DNS, reset before an answer)
// VSPHERE_TIMEOUT            a request exceeded its timeout, or no byte of its answer came for ioTimeoutMs
// VSPHERE_RESPONSE_TOO_LARGE an answer larger than maxResponseBytes (dropped at the cap)
// VSPHERE_HTTP               an HTTP status that carries no SOAP fault
// VSPHERE_CANCELLED          the caller's AbortSignal fired
// TLS_FINGERPRINT_MISMATCH   pinned fingerprint differs from the server certificate's (nothing was sent)
// TLS_UNTRUSTED              certificate not trusted by the system CAs and no fingerprint pinned
// TLS_FINGERPRINT_SYNTAX     a --thumbprint that is neither SHA-1 nor SHA-256 hex
// VM_NOT_FOUND, VM_AMBIGUOUS, DISK_NOT_FOUND, SNAPSHOT_NOT_FOUND   inventory look-ups
// SNAPSHOT_REQUIRED          changed areas of a powered-on VM asked without a snapshot
// SNAPSHOT_REMOVE_FAILED     work failed and removing its snapshot failed too (cause = the first error)
// Extent validation of an answer raises ExtentError (EXTENT_*) from src/extents, naming server/VM/disk.
import { VcbtError, type ErrorCode } from '../errors.ts';
import type { XmlElement } from './xml.ts';

/** What an operation concerns, for messages and error context. */
export interface Target {
  server: string;
  vm?: { name: string; moref: string };
  diskKey?: number;
}

export function describeTarget(target: Target): string {
  const parts = [`server ${target.server}`];
  if (target.vm) parts.push(`VM "${target.vm.name}" (${target.vm.moref})`);
  if (target.diskKey !== undefined) parts.push(`disk ${target.diskKey}`);
  return parts.join(', ');
}

function targetContext(target: Target): Record<string, unknown> {
  return { server: target.server, vm: target.vm?.name, vmMoref: target.vm?.moref, diskKey: target.diskKey };
}

export class VsphereError extends VcbtError {
  constructor(code: ErrorCode, message: string, target: Target, extra: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, `${message} (${describeTarget(target)})`, { ...targetContext(target), ...extra }, options);
  }
}

const faultCodes: Record<string, ErrorCode> = {
  NotAuthenticated: 'VSPHERE_NOT_AUTHENTICATED',
  InvalidLogin: 'VSPHERE_INVALID_LOGIN',
  NoPermission: 'VSPHERE_NO_PERMISSION',
  ManagedObjectNotFound: 'VSPHERE_OBJECT_NOT_FOUND',
};

/** A vim25 fault, from a SOAP Fault or a task's info.error. */
export class VsphereFault extends VsphereError {
  readonly faultType: string;
  readonly faultMessage: string;
  readonly method: string;
  /** The fault's data object (e.g. InvalidArgument's invalidProperty); not part of the message. */
  readonly detail: XmlElement | undefined;

  constructor(fault: { faultType: string; faultMessage: string; detail?: XmlElement }, method: string, target: Target, code?: ErrorCode) {
    const text = fault.faultMessage ? `: ${fault.faultMessage}` : '';
    super(code ?? faultCodes[fault.faultType] ?? 'VSPHERE_FAULT', `${method} failed with ${fault.faultType}${text}`, target, {
      faultType: fault.faultType,
      faultMessage: fault.faultMessage,
      method,
    });
    this.faultType = fault.faultType;
    this.faultMessage = fault.faultMessage;
    this.method = method;
    this.detail = fault.detail;
  }
}

/** The server rejected the ChangeId given to QueryChangedDiskAreas: fall back to a full (`*`) read. */
export class ChangeIdInvalidError extends VsphereError {
  readonly changeId: string;
  constructor(reason: string, changeId: string, target: Target, cause?: unknown) {
    super('CBT_CHANGEID_INVALID', `ChangeId "${changeId}" is not usable: ${reason}; read the allocated areas (changeId "*") instead`, target, { changeId }, { cause });
    this.changeId = changeId;
  }
}

export function isVsphereFault(error: unknown, faultType?: string): error is VsphereFault {
  return error instanceof VsphereFault && (faultType === undefined || error.faultType === faultType);
}

export class TlsError extends VcbtError {
  constructor(code: ErrorCode, message: string, context: Record<string, unknown>) {
    super(code, message, context);
  }
}
