// Schedules: when a job runs, as a cron expression in a time zone (croner: 5 fields, or 6
// with seconds first; `@daily` and friends), e.g. `0 2 * * *` in Europe/Berlin. Without a
// time zone the machine's local one applies. Only the next run time is computed here; the
// scheduler that fires them is the daemon's (vcbt serve).
import type { JobConfig } from './config.ts';
import { Cron } from 'croner';

export interface Schedule {
  cron: string;
  /** IANA time zone (Europe/Berlin); absent: the machine's local time zone. */
  timezone: string | undefined;
}

function cronOf(schedule: Schedule): Cron {
  return new Cron(schedule.cron, { timezone: schedule.timezone, paused: true });
}

/** Why the schedule cannot be used (a malformed expression, an unknown time zone), or undefined. */
export function scheduleProblem(schedule: Schedule): string | undefined {
  if (schedule.timezone !== undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: schedule.timezone });
    } catch {
      return `unknown time zone "${schedule.timezone}" (an IANA name such as Europe/Berlin or UTC)`;
    }
  }
  try {
    const cron = cronOf(schedule);
    if (cron.nextRun() === null) return `cron expression "${schedule.cron}" never fires`;
  } catch (error) {
    return `cron expression "${schedule.cron}" is not valid: ${error instanceof Error ? error.message : String(error)}`;
  }
  return undefined;
}

/** The first time after `after` the schedule fires, or null when it never does again. */
export function nextRun(schedule: Schedule, after: Date): Date | null {
  return cronOf(schedule).nextRun(after);
}

/** What a job list shows of a job: its kind, where it goes and when it runs next (after `now`). */
export interface JobSummary {
  name: string;
  type: JobConfig['type'];
  server: string;
  target: string;
  schedule: string | null;
  timezone: string | null;
  nextRun: string | null;
}

export function summarizeJob(job: JobConfig, now: Date): JobSummary {
  return {
    name: job.name,
    type: job.type,
    server: job.server,
    target: job.type === 'backup' ? `repository ${job.repository}` : `replica ${job.replica?.target}`,
    schedule: job.schedule?.cron ?? null,
    timezone: job.schedule?.timezone ?? null,
    nextRun: job.schedule ? (nextRun(job.schedule, now)?.toISOString() ?? null) : null,
  };
}

/**
 * The job's recovery point objective: its `rpo`, else twice the interval between its
 * schedule's next two runs after `now`, else null (no schedule: no objective).
 */
export function rpoOf(job: Pick<JobConfig, 'rpoMs' | 'schedule'>, now: Date): number | null {
  if (job.rpoMs !== undefined) return job.rpoMs;
  if (!job.schedule) return null;
  const cron = cronOf(job.schedule);
  const first = cron.nextRun(now);
  const second = first ? cron.nextRun(first) : null;
  return first && second ? 2 * (second.getTime() - first.getTime()) : null;
}
