// Reading properties: PropertyCollector.RetrievePropertiesEx with paging through
// ContinueRetrievePropertiesEx, and ContainerView for "every object of a type".
// Values stay XmlElements here; inventory.ts and friends decode the ones they need.
import { asMoRef, child, children, requireChild, requireText, type MoRef } from './decode.ts';
import { localizedFault, ref, returnValues, type SoapObject } from './soap.ts';
import { VsphereFault } from './errors.ts';
import type { CallOptions, VsphereSession } from './session.ts';
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
      // NotAuthenticated here means the whole session expired: let call() re-login.
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
  const callOptions = { ...options, idempotent: true };
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
  const created = await session.call('CreateContainerView', viewManager, { container: ref(rootFolder), type: [type], recursive: true }, options);
  const view = asMoRef(requireChild(created, 'returnval'));
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
    const objects = await retrieveAll(session, specSet, options);
    await session.call('DestroyView', view, {}, options);
    return objects;
  } catch (error) {
    // The read failed: report that, not a failure to clean up (views die with the session).
    await session.call('DestroyView', view, {}, options).catch(() => undefined);
    throw error;
  }
}
