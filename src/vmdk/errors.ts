// The one error class of src/vmdk. Every code names the file and, where one applies, the byte
// offset inside it that is wrong (context `file`/`path` and `offsetBytes`): a chain that cannot
// be read is refused, never read as wrong bytes.
//
// Codes: VMDK_NOT_FLAT (a flat-only reader met a delta/sparse/RDM disk), VMDK_DESCRIPTOR (not a
// descriptor, or a bad CID), VMDK_PATH (not a datastore path), VMDK_EXTENT_TYPE (an extent type
// vcbt cannot read), VMDK_MAGIC (a sparse extent without its magic number), VMDK_HEADER (a header
// field vcbt does not support or that contradicts the descriptor), VMDK_TRUNCATED (the file ends
// inside a header, grain directory, grain table or grain), VMDK_OUT_OF_BOUNDS (a grain directory
// or grain table entry points outside the file or its area), VMDK_GRAIN_ENTRY (a grain table
// entry of no known type), VMDK_CID_MISMATCH (a delta's parentCID is not its parent's CID),
// VMDK_PARENT_CYCLE (parent hints lead back to a disk already in the chain, or too deep).
import { VcbtError } from '../errors.ts';

export class VmdkError extends VcbtError {}
