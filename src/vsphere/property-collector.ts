// Reading properties: PropertyCollector.RetrievePropertiesEx with paging through
// ContinueRetrievePropertiesEx, and ContainerView for "every object of a type".
// Values stay XmlElements here; inventory.ts and friends decode the ones they need.
//
// Paging tokens and ContainerViews belong to the login that made them: both are made and
// used inside `session.withSessionObjects`, so a re-login in the middle starts the read over
// (first page, fresh view) instead of handing the new login a dead token or view. A view
// left behind by an ended login needs no DestroyView (it died with its session).
import { asMoRef, child, children, requireChild, requireText, type MoRef } from './decode.ts';
import { localizedFault, ref, returnValues, type SoapObject } from './soap.ts';
import { VsphereFault } from './errors.ts';
import type { CallOptions, SessionScope, VsphereSession } from './session.ts';
import type { XmlElement } from './xml.ts';

export interface ObjectContent {
  obj: MoRef;
  /** Property path → value element (`<val xsi:type=...>`). Unset properties are absent. */
  props: Map<string, XmlElement>;
}

/** Objects per page; the server may return fewer and hands out a token for the rest. */
const pageObjects = 100;

function propertySpec(type: string, pathSet: readonly string[]): SoapObject {
  return { type, all: false, pathSet };
}

function decodeObjects(result: XmlElement, session: VsphereSession, options: CallOptions): ObjectContent[] {
  return children(result, 'objects').map((objectContent) => {
    const obj = asMoRef(requireChild(objectContent, 'obj'));
    const props = new Map<string, XmlElement>();
    for (const prop of children(objectContent, 'propSet')) props.set(requireText(prop, 'name'), requireChild(prop, 'val'));
    for (const missing of children(objectContent, 'missingSet')) {
      const fault = localizedFault(requireChild(missing, 'fault'));
      // (NotAuthenticated never gets here: session.call() re-logs in on it.)
      if (fault.faultType === 'NotAuthenticated' || fault.faultType === 'ManagedObjectNotFound' || fault.faultType === 'NoPermission') {
        throw new VsphereFault(fault, `RetrievePropertiesEx(${obj.value}.${requireText(missing, 'path')})`, session.target(options.target));
      }
    }
    return { obj, props };
  });
}

/** RetrievePropertiesEx over a full PropertyFilterSpec, following every page. */
export async function retrieveAll(session: VsphereSession, specSet: SoapObject, options: CallOptions = {}): Promise<ObjectContent[]> {
  const collector = session.serviceContent.propertyCollector;
  return session.withSessionObjects(async (scope) => {
    const callOptions = { ...options, idempotent: true, scope };
    const first = await session.call('RetrievePropertiesEx', collector, { specSet, options: { maxObjects: pageObjects } }, callOptions);
    const objects: ObjectContent[] = [];
    let result = returnValues(first)[0];
    while (result) {
      objects.push(...decodeObjects(result, session, options));
      const token = child(result, 'token')?.text;
      if (!token) break;
      const next = await session.call('ContinueRetrievePropertiesEx', collector, { token }, callOptions);
      result = returnValues(next)[0];
    }
    return objects;
  }, options.scope);
}

/** Properties of specific objects (all of one type). Missing objects fault (ManagedObjectNotFound). */
export async function retrieveProperties(session: VsphereSession, objects: readonly MoRef[], pathSet: readonly string[], options: CallOptions = {}): Promise<ObjectContent[]> {
  if (objects.length === 0) return [];
  const specSet: SoapObject = {
    propSet: [propertySpec(objects[0].type, pathSet)],
    objectSet: objects.map((obj) => ({ obj: ref(obj), skip: false })),
  };
  return retrieveAll(session, specSet, options);
}

/** Properties of one object; resolves to its property map. */
export async function retrieveOne(session: VsphereSession, obj: MoRef, pathSet: readonly string[], options: CallOptions = {}): Promise<Map<string, XmlElement>> {
  const [content] = await retrieveProperties(session, [obj], pathSet, options);
  return content?.props ?? new Map();
}

/** Every object of `type` under the root folder, with the given properties (via a ContainerView). */
export async function retrieveAllOfType(session: VsphereSession, type: string, pathSet: readonly string[], options: CallOptions = {}): Promise<ObjectContent[]> {
  const { viewManager, rootFolder } = session.serviceContent;
  return session.withSessionObjects(async (scope) => {
    const scoped = { ...options, scope };
    const created = await session.call('CreateContainerView', viewManager, { container: ref(rootFolder), type: [type], recursive: true }, scoped);
    const view = asMoRef(requireChild(created, 'returnval'));
    let objects: ObjectContent[];
    try {
      const specSet: SoapObject = {
        propSet: [propertySpec(type, pathSet)],
        objectSet: [
          {
            obj: ref(view),
            skip: true,
            selectSet: [{ $type: 'TraversalSpec', name: 'view', type: 'ContainerView', path: 'view', skip: false }],
          },
        ],
      };
      objects = await retrieveAll(session, specSet, scoped);
    } catch (error) {
      // The read failed: report that, not a failure to clean up.
      await destroyView(session, view, scoped).catch(() => undefined);
      throw error;
    }
    await destroyView(session, view, scoped);
    return objects;
  }, options.scope);
}

/** DestroyView, unless the view's login has ended (the view is gone with it). */
async function destroyView(session: VsphereSession, view: MoRef, options: CallOptions & { scope: SessionScope }): Promise<void> {
  if (session.loginGeneration !== options.scope.generation) return;
  try {
    await session.call('DestroyView', view, {}, options);
  } catch (error) {
    if (session.loginGeneration !== options.scope.generation) return; // ended meanwhile (and renewed)
    throw error;
  }
}
