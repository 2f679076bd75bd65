// OVF import through an HttpNfcLease, the VDDK-free way vSphere takes a VM with its disks:
//
//   1. OvfManager.CreateImportSpec(OVF descriptor, resource pool, datastore, params): the
//      import spec (a VirtualMachineImportSpec) and the file items (which disk file goes to
//      which device), or errors/warnings.
//   2. ResourcePool.ImportVApp(spec, folder, host): creates the VM and returns a lease.
//   3. The lease becomes `ready` (or `error`); its info lists one device URL per disk
//      (`importKey` = the file item's `deviceId`; host `*` means the server we talk to).
//   4. Each disk is uploaded (POST, `application/x-vnd.vmware-streamVmdk`) to its URL while
//      HttpNfcLeaseProgress keeps the lease alive; then HttpNfcLeaseComplete, or
//      HttpNfcLeaseAbort on any failure (vSphere then removes the VM).
//
// Uploads go over the session's TLS-checked agent when the URL names the server we are
// logged in to, and otherwise (an ESXi host) over an agent pinned to the URL's
// `sslThumbprint`, or checked against the system CAs when there is none. The session cookie
// authenticates them. A response that does not come within `ioTimeoutMs` of the last byte
// sent fails the upload.
import https from 'node:https';
import { asMoRef, child, children, optionalText, requireChild, requireText, withTarget, type MoRef } from './decode.ts';
import { VsphereError, VsphereFault } from './errors.ts';
import { retrieveOne } from './property-collector.ts';
import { echo, localizedFault, ref, returnValues } from './soap.ts';
import type { VsphereSession } from './session.ts';
import { sleep } from './sleep.ts';
import { CheckedAgent, parseFingerprint } from './tls.ts';
import type { XmlElement } from './xml.ts';

export interface ImportTarget {
  resourcePool: MoRef;
  datastore: MoRef;
  folder: MoRef;
  host?: MoRef;
}

export interface ImportSpecParams {
  entityName: string;
  /** OVF network name -> network of the target. */
  networkMapping: ReadonlyArray<{ name: string; network: MoRef }>;
  /** thin | thick | eagerZeroedThick (OvfCreateImportSpecParamsDiskProvisioningType). */
  diskProvisioning?: string;
}

export interface ImportSpec {
  /** The import spec element, sent back unchanged to ImportVApp. */
  importSpec: XmlElement;
  /** deviceId (the lease's importKey) -> file href of the OVF. */
  fileItems: Array<{ deviceId: string; path: string }>;
  warnings: string[];
}

export interface LeaseDevice {
  key: string;
  importKey: string;
  url: URL;
  sslThumbprint: string | undefined;
  disk: boolean;
  targetId: string | undefined;
}

export interface ReadyLease {
  lease: MoRef;
  /** The VM the import creates. */
  entity: MoRef;
  devices: LeaseDevice[];
}

function messagesOf(elements: XmlElement[]): string[] {
  return elements.map((e) => optionalText(e, 'localizedMessage') ?? e.xsiType ?? 'unknown');
}

/** CreateImportSpec; fails with the server's errors (OVF_IMPORT_SPEC) when it reports any. */
export async function createImportSpec(session: VsphereSession, ovfDescriptor: string, target: ImportTarget, params: ImportSpecParams): Promise<ImportSpec> {
  const ovfManager = session.serviceContent.ovfManager;
  if (!ovfManager) throw new VsphereError('VSPHERE_BAD_RESPONSE', 'the server has no OvfManager', session.target());
  return withTarget(session.target(), async () => {
    const response = await session.call('CreateImportSpec', ovfManager, {
      ovfDescriptor,
      resourcePool: ref(target.resourcePool),
      datastore: ref(target.datastore),
      cisp: {
        $type: 'OvfCreateImportSpecParams',
        locale: '',
        deploymentOption: '',
        entityName: params.entityName,
        networkMapping: params.networkMapping.map((m) => ({ $type: 'OvfNetworkMapping', name: m.name, network: ref(m.network) })),
        diskProvisioning: params.diskProvisioning,
      },
    });
    const result = returnValues(response)[0];
    if (!result) throw new VsphereError('VSPHERE_BAD_RESPONSE', 'CreateImportSpec returned nothing', session.target());
    const errors = messagesOf(children(result, 'error'));
    const spec = child(result, 'importSpec');
    if (errors.length > 0 || !spec) {
      throw new VsphereError('OVF_IMPORT_SPEC', `the server refused the OVF descriptor: ${errors.join('; ') || 'no import spec'}`, session.target(), { errors });
    }
    return {
      importSpec: spec,
      fileItems: children(result, 'fileItem').map((f) => ({ deviceId: requireText(f, 'deviceId'), path: requireText(f, 'path') })),
      warnings: messagesOf(children(result, 'warning')),
    };
  });
}

/** ImportVApp: the VM is created now; returns the lease. */
export async function importVApp(session: VsphereSession, spec: ImportSpec, target: ImportTarget): Promise<MoRef> {
  const response = await session.call('ImportVApp', target.resourcePool, { spec: echo(spec.importSpec), folder: ref(target.folder), host: target.host ? ref(target.host) : undefined });
  return withTarget(session.target(), async () => asMoRef(requireChild(response, 'returnval')));
}

function leaseFault(session: VsphereSession, error: XmlElement | undefined, what: string): VsphereFault {
  const fault = error ? localizedFault(error) : { faultType: 'UnknownFault', faultMessage: 'the lease failed without an error', detail: undefined };
  return new VsphereFault(fault, what, session.target());
}

/** Waits until the lease is ready (or fails with its error); resolves to its device URLs. */
export async function waitForLease(session: VsphereSession, lease: MoRef, signal?: AbortSignal): Promise<ReadyLease> {
  let pollMs = 50;
  return withTarget(session.target(), async () => {
    while (true) {
      const props = await retrieveOne(session, lease, ['state', 'info', 'error'], { idempotent: true, signal });
      const state = props.get('state')?.text.trim();
      if (state === 'error') throw leaseFault(session, props.get('error'), 'HttpNfcLease');
      if (state === 'ready') {
        const info = props.get('info');
        if (!info) throw new VsphereError('VSPHERE_BAD_RESPONSE', `lease ${lease.value} is ready without info`, session.target());
        const entity = asMoRef(requireChild(info, 'entity'));
        const devices = children(info, 'deviceUrl').map((d): LeaseDevice => {
          const url = new URL(requireText(d, 'url').replace('://*', `://${session.sdkUrl.host}`));
          return {
            key: requireText(d, 'key'),
            importKey: optionalText(d, 'importKey') ?? '',
            url,
            sslThumbprint: optionalText(d, 'sslThumbprint')?.trim() || undefined,
            disk: optionalText(d, 'disk')?.trim() === 'true',
            targetId: optionalText(d, 'targetId'),
          };
        });
        return { lease, entity, devices };
      }
      if (state !== 'initializing') throw new VsphereError('VSPHERE_BAD_RESPONSE', `lease ${lease.value} in unknown state "${state}"`, session.target());
      await sleep(pollMs, signal);
      pollMs = Math.min(pollMs * 2, 1000);
    }
  });
}

/** The lease's state now and its error, if any. */
export async function leaseState(session: VsphereSession, lease: MoRef): Promise<{ state: string; error: VsphereFault | undefined }> {
  const props = await retrieveOne(session, lease, ['state', 'error'], { idempotent: true });
  const state = props.get('state')?.text.trim() ?? 'unknown';
  return { state, error: state === 'error' ? leaseFault(session, props.get('error'), 'HttpNfcLease') : undefined };
}

export async function leaseProgress(session: VsphereSession, lease: MoRef, percent: number): Promise<void> {
  await session.call('HttpNfcLeaseProgress', lease, { percent: Math.max(0, Math.min(100, Math.floor(percent))) });
}

export async function leaseComplete(session: VsphereSession, lease: MoRef): Promise<void> {
  await session.call('HttpNfcLeaseComplete', lease, {});
}

/** HttpNfcLeaseAbort with the reason (as a SystemError fault). */
export async function leaseAbort(session: VsphereSession, lease: MoRef, reason: string): Promise<void> {
  await session.call('HttpNfcLeaseAbort', lease, { fault: { $type: 'SystemError', reason } });
}

/** The agent for an upload URL: the session's for its own server, else one pinned to the device's thumbprint. */
export function uploadAgent(session: VsphereSession, device: LeaseDevice): https.Agent {
  if (device.url.host === session.sdkUrl.host) return session.agent;
  return new CheckedAgent(device.sslThumbprint ? { pinnedFingerprint: parseFingerprint(device.sslThumbprint) } : {});
}

export interface UploadOptions {
  signal?: AbortSignal;
  /** Longest wait for the server's answer after the last byte, or for the socket to drain; default 120 s. */
  ioTimeoutMs?: number;
  /** Told the bytes sent so far. */
  onBytes?: (sentBytes: number) => void;
}

/**
 * POSTs `body` (a streamOptimized VMDK, of unknown length: chunked) to a lease device URL,
 * with backpressure; resolves to the bytes sent once the server answers 2xx.
 */
export function uploadToLease(session: VsphereSession, device: LeaseDevice, body: AsyncIterable<Buffer>, options: UploadOptions = {}): Promise<number> {
  const ioTimeoutMs = options.ioTimeoutMs ?? 120_000;
  const agent = uploadAgent(session, device);
  return new Promise<number>((resolve, reject) => {
    let sentBytes = 0;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (agent !== session.agent) agent.destroy();
      if (error) {
        request.destroy();
        reject(error);
      } else resolve(sentBytes);
    };
    const fail = (message: string, cause?: unknown) =>
      finish(new VsphereError('NFC_UPLOAD', `upload of ${device.targetId ?? device.key} to ${device.url.host}: ${message}`, session.target(), { url: device.url.pathname, sentBytes }, { cause }));
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(`no progress for ${ioTimeoutMs} ms`), ioTimeoutMs);
      timer.unref();
    };
    const request = https.request(device.url, {
      method: 'POST',
      agent,
      signal: options.signal,
      headers: { Cookie: session.cookieHeader(), 'Content-Type': 'application/x-vnd.vmware-streamVmdk', 'Transfer-Encoding': 'chunked' },
    });
    request.on('error', (error) => (options.signal?.aborted ? finish(options.signal.reason as Error) : fail(error.message, error)));
    request.on('response', (response) => {
      touch();
      let text = '';
      response.on('data', (chunk: Buffer) => {
        if (text.length < 4096) text += chunk.toString('utf8');
      });
      response.on('error', (error) => fail(error.message, error));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        if (status >= 200 && status < 300) finish(undefined);
        else fail(`HTTP ${status}${text.trim() ? `: ${text.trim().slice(0, 500)}` : ''}`);
      });
    });
    (async () => {
      touch();
      for await (const piece of body) {
        if (settled) return;
        sentBytes += piece.length;
        touch();
        if (!request.write(piece)) {
          await new Promise<void>((drained) => {
            request.once('drain', drained);
            request.once('close', drained);
          });
        }
        options.onBytes?.(sentBytes);
      }
      request.end();
      touch();
    })().catch((error: unknown) => finish(error instanceof Error ? error : new Error(String(error))));
  });
}
