// Waiting for a Task: poll `info` until `success` or `error`, reporting progress.
// A task's error (LocalizedMethodFault) becomes the same VsphereFault a direct call raises.
// Polling (not WaitForUpdatesEx) keeps the client stateless: no filters to clean up, and a
// re-login in the middle of a wait needs nothing special. The interval grows to pollMaxMs.
import { asMoRef, child, optionalText, requireChild, requireText, SoapDecodeError, type MoRef } from './decode.ts';
import { localizedFault } from './soap.ts';
import { VsphereFault, type Target } from './errors.ts';
import { retrieveOne } from './property-collector.ts';
import type { VsphereSession } from './session.ts';
import type { XmlElement } from './xml.ts';
import { sleep } from './sleep.ts';

export interface TaskProgress {
  task: MoRef;
  state: string;
  /** 0-100 when the server reports it. */
  percent: number | undefined;
}

export interface WaitOptions {
  /** What the task is for, e.g. `CreateSnapshot_Task`, for messages. */
  method: string;
  target?: Omit<Target, 'server'>;
  onProgress?: (progress: TaskProgress) => void;
  /** Stops waiting (the task itself keeps running on the server). */
  signal?: AbortSignal;
  pollInitialMs?: number;
  pollMaxMs?: number;
}

/** Reads the task moref a `*_Task` method returned. */
export function taskOf(response: XmlElement): MoRef {
  return asMoRef(requireChild(response, 'returnval'));
}

/** Waits for the task; resolves to its `info.result` element (absent for void tasks). */
export async function waitForTask(session: VsphereSession, task: MoRef, options: WaitOptions): Promise<XmlElement | undefined> {
  let pollMs = options.pollInitialMs ?? 50;
  const pollMaxMs = options.pollMaxMs ?? 1000;
  while (true) {
    const props = await retrieveOne(session, task, ['info'], { target: options.target, signal: options.signal });
    const info = props.get('info');
    if (!info) throw new SoapDecodeError(`task ${task.value} has no info`);
    const state = requireText(info, 'state').trim();
    const progressText = optionalText(info, 'progress');
    options.onProgress?.({ task, state, percent: progressText === undefined ? undefined : Number(progressText) });
    if (state === 'success') return child(info, 'result');
    if (state === 'error') {
      const error = child(info, 'error');
      const fault = error ? localizedFault(error) : { faultType: 'UnknownFault', faultMessage: 'task failed without an error', detail: undefined };
      throw new VsphereFault(fault, options.method, session.target(options.target));
    }
    if (state !== 'queued' && state !== 'running') throw new SoapDecodeError(`task ${task.value} in unknown state "${state}"`);
    await sleep(pollMs, options.signal);
    pollMs = Math.min(pollMs * 2, pollMaxMs);
  }
}

/** Starts a `*_Task` method and waits for it. */
export async function runTask(
  session: VsphereSession,
  method: string,
  thisRef: MoRef,
  params: Parameters<VsphereSession['call']>[2],
  options: Omit<WaitOptions, 'method'> = {},
): Promise<XmlElement | undefined> {
  const response = await session.call(method, thisRef, params, { target: options.target, signal: options.signal });
  return waitForTask(session, taskOf(response), { ...options, method });
}
