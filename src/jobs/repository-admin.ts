// The repository work the commands (and the service to come) ask for outside backup and
// restore: creating, opening, verifying, pruning, unlocking. The CLI reaches the repository
// only through src/jobs (eslint.config.js enforces it); this file is that door.
export { passphraseFrom } from '../repository/passphrase.ts';
export { defaultChunkBytes, defaultCompressionLevel, openRepositoryStorage, Repository } from '../repository/repository.ts';
export { prune } from '../repository/prune.ts';
export { copyPoints } from '../repository/copy.ts';
export { verifyRepository } from '../repository/verify.ts';
export { unlock } from '../repository/unlock.ts';
