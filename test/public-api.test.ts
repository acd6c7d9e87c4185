import { describe, expect, it } from 'vitest'
import * as api from '../src/index.js'

// The names host code relies on (DESIGN.md). Adding a name is a decision; removing or renaming one breaks hosts.
const RUNTIME_EXPORTS = [
  'AuditLog',
  'AuthenticationError',
  'BaseModel',
  'BaseQueryBuilder',
  'ConfigError',
  'ConflictError',
  'DEFAULT_ROLES',
  'DROPLET_STATUSES',
  'DataError',
  'DecryptionError',
  'Droplet',
  'FILTER_LIMITS',
  'ForbiddenError',
  'InvalidCursorError',
  'Keyring',
  'MIGRATIONS_TABLE',
  'NotFoundError',
  'SCOPED_DATABASE_ROLE',
  'Scope',
  'UnavailableError',
  'User',
  'ValidationError',
  'createDatabase',
  'blindIndex',
  'decryptValue',
  'definePolicy',
  'encryptValue',
  'envelopeKeyId',
  'fernetDecrypt',
  'fernetEncrypt',
  'fernetKey',
  'hashPassword',
  'healthHandler',
  'isDataError',
  'isFernetToken',
  'migrationSource',
  'normalizeSql',
  'ownedBy',
  'passwordNeedsRehash',
  'verifyPassword',
]

describe('public API', () => {
  it('exports exactly the documented runtime names', () => {
    expect(Object.keys(api).sort()).toEqual([...RUNTIME_EXPORTS].sort())
  })

  it('exports no mutable state', () => {
    expect(Object.isFrozen(api.migrationSource)).toBe(true)
    expect(Object.isFrozen(api.DROPLET_STATUSES)).toBe(true)
  })
})
