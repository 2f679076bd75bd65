// VMs: every VM of every configured server with its protection status (service/protection.ts),
// and one VM's restore points and replicas (service/vm-points.ts).
import { protectionReport } from '../../service/protection.ts';
import { backupJobFor, enableVmCbt } from '../../service/vm-actions.ts';
import { vmPoints } from '../../service/vm-points.ts';
import { ApiError, badRequest, conflict, field, json, notFound, nullableError, nullableString, pathParam, readOnlyRefused, ref, requestBody, segment, unauthorized, type RouteGroup } from '../route.ts';
import { task } from './runs.ts';

const lastGood = {
  description: 'the newest task that protected the VM (success or warning): its job, run, end, age and restore point',
  oneOf: [
    { type: 'null' },
    {
      type: 'object',
      additionalProperties: false,
      required: ['job', 'runId', 'endedAt', 'ageSeconds', 'pointId'],
      properties: { job: { type: 'string' }, runId: { type: 'integer' }, endedAt: { type: 'string' }, ageSeconds: { type: 'integer' }, pointId: nullableString },
    },
  ],
};

const vm = {
  type: 'object',
  additionalProperties: false,
  required: ['server', 'name', 'moref', 'inInventory', 'instanceUuid', 'powerState', 'cbtEnabled', 'provisionedBytes', 'host', 'folder', 'jobs', 'lastGood', 'lastTask'],
  properties: {
    server: { type: 'string', description: 'the name of the server in the configuration' },
    name: { type: 'string' },
    moref: { type: 'string' },
    inInventory: { type: ['boolean', 'null'], description: 'false: the catalog knows the VM but its server no longer lists it; null: the server could not be read' },
    instanceUuid: nullableString,
    powerState: { type: ['string', 'null'], description: 'poweredOn, poweredOff, suspended; null when not in the inventory' },
    cbtEnabled: { type: ['boolean', 'null'] },
    provisionedBytes: { type: ['integer', 'null'], description: 'sum of the disks\u2019 capacities' },
    host: nullableString,
    folder: nullableString,
    jobs: {
      type: 'array',
      description: 'the jobs whose selection covers the VM now, and those with tasks of it',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['job', 'lastGood', 'rpoSeconds', 'breached'],
        properties: {
          job: { type: 'string' },
          lastGood,
          rpoSeconds: { type: ['integer', 'null'], description: 'the job\u2019s recovery point objective (its `rpo`, else twice its schedule\u2019s interval); null: none' },
          breached: { type: ['boolean', 'null'], description: 'no good restore point of this job, or the newest is older than rpoSeconds; null without an objective' },
        },
      },
    },
    lastGood,
    lastTask: { oneOf: [{ type: 'null' }, ref('VmTask')] },
  },
};

const server = {
  type: 'object',
  additionalProperties: false,
  required: ['server', 'error', 'readAt', 'vmCount'],
  properties: { server: { type: 'string' }, error: nullableError, readAt: { type: 'string', description: 'when its inventory was read (it is reused for daemon.inventoryCache)' }, vmCount: { type: ['integer', 'null'] } },
};

const vmPoint = {
  type: 'object',
  additionalProperties: false,
  required: ['repository', 'id', 'createdAt', 'mode', 'reasonCodes', 'bytesStored', 'damaged', 'runId', 'job', 'disks'],
  properties: {
    repository: { type: 'string' },
    id: { type: 'string' },
    createdAt: { type: 'string' },
    mode: { type: 'string', enum: ['full', 'incremental', 'mixed'] },
    reasonCodes: { type: 'array', items: { type: 'string' }, description: 'why each disk was copied full or incremental (from the run that made it; empty when unknown)' },
    bytesStored: { type: 'integer', description: 'bytes of new chunk files this point stored' },
    damaged: { type: 'boolean' },
    runId: { type: ['integer', 'null'] },
    job: nullableString,
    disks: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['deviceKey', 'label', 'capacityBytes', 'mode', 'bytesStored', 'basedOn'],
        properties: { deviceKey: { type: 'integer' }, label: { type: 'string' }, capacityBytes: { type: 'integer' }, mode: { type: 'string', enum: ['full', 'incremental'] }, bytesStored: { type: 'integer' }, basedOn: nullableString },
      },
    },
  },
};

const replica = {
  type: 'object',
  additionalProperties: false,
  required: ['job', 'runId', 'endedAt', 'mode', 'reasonCodes', 'bytesWritten'],
  properties: { job: { type: 'string' }, runId: { type: 'integer' }, endedAt: { type: 'string' }, mode: { type: ['string', 'null'], enum: ['full', 'incremental', 'mixed', null] }, reasonCodes: { type: 'array', items: { type: 'string' } }, bytesWritten: { type: 'integer' } },
};

export const vmsGroup: RouteGroup = {
  routes: ({ config, catalog, inventory, env, daemon }) => {
    const serverOf = (text: string | undefined) => {
      const name = segment(text);
      if (!config.servers.has(name)) throw new ApiError('API_NOT_FOUND', `no server "${name}" in the configuration`, { server: name });
      return name;
    };
    return [
    {
      method: 'POST',
      pattern: /^\/api\/vms\/([^/]+)\/([^/]+)\/cbt\/enable$/,
      action: true,
      handler: async (_request, [serverText, morefText]) => {
        const serverName = serverOf(serverText);
        const vm = await enableVmCbt(config, env, serverName, segment(morefText));
        inventory.invalidate(serverName);
        return { status: 200, body: { server: serverName, ...vm } };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/vms\/([^/]+)\/([^/]+)\/backup$/,
      action: true,
      handler: async ({ body }, [serverText, morefText]) => {
        const serverName = serverOf(serverText);
        const { job, vmName } = await backupJobFor(config, env, serverName, segment(morefText), field.string(body, 'job', false));
        const runId = await daemon.runNow(job.name, 'api', [vmName]);
        return { status: 202, body: { runId, job: job.name } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/vms$/,
      action: false,
      handler: async () => ({ status: 200, body: await protectionReport(config, catalog, inventory) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/vms\/([^/]+)\/([^/]+)\/points$/,
      action: false,
      handler: async (_request, [serverText, morefText]) => {
        const serverName = serverOf(serverText);
        const moref = segment(morefText);
        const known = (await inventory.server(serverName)).vms?.find((p) => p.vm.moref.value === moref);
        const inCatalog = known ? true : (await catalog.vmTasks(moref, 1000)).some((t) => config.jobs.get(t.job)?.server === serverName);
        if (!inCatalog) throw new ApiError('API_NOT_FOUND', `no VM ${moref} on server "${serverName}" (neither in its inventory nor in the catalog)`, { server: serverName, moref });
        const found = await vmPoints(config, catalog, env, { server: serverName, moref, instanceUuid: known?.vm.instanceUuid ?? null });
        return { status: 200, body: { server: serverName, moref, name: known?.vm.name ?? null, ...found } };
      },
    },
  ];
  },
  paths: {
    '/api/vms': {
      get: {
        summary: 'every VM of every configured server (inventory cached for daemon.inventoryCache) and every VM the catalog knows, with the jobs covering it, its last good restore point and RPO status per job',
        responses: {
          '200': {
            description: 'VMs and the servers read',
            ...json({ type: 'object', additionalProperties: false, required: ['servers', 'vms'], properties: { servers: { type: 'array', items: ref('InventoryServer') }, vms: { type: 'array', items: ref('Vm') } } }),
          },
          ...unauthorized,
        },
      },
    },
    '/api/vms/{server}/{moref}/cbt/enable': {
      post: {
        summary: 'switch Changed Block Tracking on for the VM (its next backup is a full); not with a read-only token',
        parameters: [pathParam('server'), pathParam('moref')],
        responses: {
          '200': { description: 'the VM afterwards', ...json({ type: 'object', additionalProperties: false, required: ['server', 'name', 'moref', 'cbtEnabled'], properties: { server: { type: 'string' }, name: { type: 'string' }, moref: { type: 'string' }, cbtEnabled: { type: 'boolean' } } }) },
          ...unauthorized,
          ...readOnlyRefused,
          ...notFound('no such server (API_NOT_FOUND) or VM (VM_NOT_FOUND)'),
        },
      },
    },
    '/api/vms/{server}/{moref}/backup': {
      post: {
        summary: 'back the VM up now: a run of the backup job that selects it, restricted to it (`vcbt job run NAME --vm`); not with a read-only token',
        parameters: [pathParam('server'), pathParam('moref')],
        requestBody: requestBody({ type: 'object', additionalProperties: false, properties: { job: { type: 'string', description: 'the backup job; needed when several select the VM' } } }),
        responses: {
          '202': { description: 'the run started', ...json({ type: 'object', additionalProperties: false, required: ['runId', 'job'], properties: { runId: { type: 'integer' }, job: { type: 'string' } } }) },
          ...badRequest,
          ...unauthorized,
          ...readOnlyRefused,
          ...notFound('no such server or VM (VM_NOT_FOUND), or no backup job selects it (JOB_NOT_FOUND)'),
          ...conflict('the job runs already (JOB_RUNNING) or the daemon is stopping (DAEMON_STOPPING)'),
        },
      },
    },
    '/api/vms/{server}/{moref}/points': {
      get: {
        summary: 'the restore points of one VM across the repositories (oldest first), and its replicas',
        parameters: [pathParam('server'), pathParam('moref')],
        responses: {
          '200': {
            description: 'the VM\u2019s restore points and replicas',
            ...json({
              type: 'object',
              additionalProperties: false,
              required: ['server', 'moref', 'name', 'points', 'replicas'],
              properties: { server: { type: 'string' }, moref: { type: 'string' }, name: nullableString, points: { type: 'array', items: ref('VmPoint') }, replicas: { type: 'array', items: ref('Replica') } },
            }),
          },
          ...unauthorized,
          ...notFound('no such server, or no such VM on it'),
        },
      },
    },
  },
  schemas: { Vm: vm, InventoryServer: server, VmPoint: vmPoint, Replica: replica, VmTask: { ...task, required: [...task.required, 'job'], properties: { ...task.properties, job: { type: 'string' } } } },
};
