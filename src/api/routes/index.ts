// The route groups of the API, in dispatch order. A new group: one file here, one line below.
import type { RouteGroup } from '../route.ts';
import { filesGroup } from './files.ts';
import { jobsGroup } from './jobs.ts';
import { repositoriesGroup } from './repositories.ts';
import { runsGroup } from './runs.ts';
import { sessionGroup } from './session.ts';
import { vmsGroup } from './vms.ts';

export const routeGroups: readonly RouteGroup[] = [sessionGroup, jobsGroup, runsGroup, vmsGroup, repositoriesGroup, filesGroup];
