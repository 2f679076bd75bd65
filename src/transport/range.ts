// The one range check every transport applies before touching a disk (code DISK_RANGE).

import { VcbtError } from '../errors.ts';

export function checkDiskRange(disk: string, sizeBytes: number, operation: string, offsetBytes: number, lengthBytes: number): void {
  if (
    !Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) ||
    offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > sizeBytes
  ) {
    throw new VcbtError('DISK_RANGE', `${disk}: ${operation} of ${lengthBytes} bytes at offset ${offsetBytes} is outside the disk (${sizeBytes} bytes)`, {
      disk, operation, offsetBytes, lengthBytes, sizeBytes,
    });
  }
}
