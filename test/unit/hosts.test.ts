import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/db/config.js'
import { configError } from '../helpers/errors.js'
import { fieldTargets, urlTargets } from '../../src/db/config/hosts.js'
import { noteLostConnection, toDataError } from '../../src/errors/driver-errors.js'
import { UnavailableError } from '../../src/index.js'

describe('host lists in connection', () => {
  it('reads a libpq host list, each host as a single-host URL without target_session_attrs', () => {
    const targets = urlTargets(
      'postgres://app:s3cret@10.0.0.1:5432,10.0.0.2:5433,[::1]/wincloud?sslmode=disable&target_session_attrs=read-write',
    )
    expect(targets?.targetSessionAttrs).toBe('read-write')
    expect(targets?.hosts.map((h) => h.name)).toEqual(['10.0.0.1:5432', '10.0.0.2:5433', '[::1]:5432'])
    expect(targets?.hosts.map((h) => h.settings)).toEqual([
      { connectionString: 'postgres://app:s3cret@10.0.0.1:5432/wincloud?sslmode=disable' },
      { connectionString: 'postgres://app:s3cret@10.0.0.2:5433/wincloud?sslmode=disable' },
      { connectionString: 'postgres://app:s3cret@[::1]:5432/wincloud?sslmode=disable' },
    ])
  })

  it('needs no choosing for one host without target_session_attrs, and defaults to read-write for several', () => {
    expect(urlTargets('postgres://app@127.0.0.1:5432/wincloud')).toBeUndefined()
    expect(urlTargets('postgres://app@a,b/wincloud')?.targetSessionAttrs).toBe('read-write')
    expect(urlTargets('postgres://app@a/wincloud?target_session_attrs=primary')?.hosts).toHaveLength(1)
    expect(urlTargets('postgres://app@a,b/wincloud?target_session_attrs=any')?.targetSessionAttrs).toBe('any')
  })

  it('takes the same as connection fields', () => {
    expect(fieldTargets({ hosts: [{ host: 'a' }, { host: 'b', port: 5433 }], database: 'w' })).toEqual({
      hosts: [
        { name: 'a:5432', settings: { host: 'a', port: 5432 } },
        { name: 'b:5433', settings: { host: 'b', port: 5433 } },
      ],
      targetSessionAttrs: 'read-write',
    })
    expect(fieldTargets({ host: 'a', targetSessionAttrs: 'primary' })?.hosts).toEqual([
      { name: 'a:5432', settings: { host: 'a', port: 5432 } },
    ])
    expect(fieldTargets({ host: 'a' })).toBeUndefined()
  })

  it('refuses what is not a host list, naming the field and never the password', () => {
    const cases: [unknown, string][] = [
      ['postgres://app:pw@a:99999/w', 'connection'],
      ['postgres://app:pw@a,b:x/w', 'connection'],
      ['postgres://app:pw@a,b/w?target_session_attrs=standby', 'connection.target_session_attrs'],
      [{ hosts: [] }, 'connection.hosts'],
      [{ hosts: [{ host: '' }] }, 'connection.hosts[0]'],
      [{ hosts: [{ host: 'a', port: 0 }] }, 'connection.hosts[0].port'],
      [{ hosts: [{ host: 'a', user: 'x' }] }, 'connection.hosts[0]'],
      [{ hosts: [{ host: 'a' }], host: 'b' }, 'connection.hosts'],
      [{ host: 'a', targetSessionAttrs: 'rw' }, 'connection.targetSessionAttrs'],
    ]
    for (const [connection, field] of cases) {
      const error = configError({ connection })
      expect(error.field).toBe(field)
      expect(error.message).not.toContain('pw')
    }
    expect(configError({ connection: 'postgres://a/w', replicas: ['postgres://a,b/w'] }).field).toBe('replicas[0]')
    expect(configError({ connection: 'postgres://a/w', failoverTimeoutMs: 0 }).field).toBe('failoverTimeoutMs')
    expect(configError({ connection: 'postgres://a/w', pool: { idleCheckMs: -1 } }).field).toBe('pool.idleCheckMs')
  })

  it('accepts a host list and its knobs', () => {
    const config = parseConfig({
      connection: 'postgres://app@a:5432,b:5433/w?target_session_attrs=read-write',
      failoverTimeoutMs: 5_000,
      pool: { idleCheckMs: 0, queryTimeoutMs: 30_000 },
    })
    expect(config.failoverTimeoutMs).toBe(5_000)
    expect(config.pool.idleCheckMs).toBe(0)
    expect(config.pool.queryTimeoutMs).toBe(30_000)
  })
})

describe('a write whose connection was lost', () => {
  const lost = (): Error => Object.assign(new Error('Connection terminated unexpectedly'), {})

  it('is commitUnknown when an autocommit write or a COMMIT was in flight', () => {
    for (const [sql, status] of [
      ['update droplets set status = $1', 'I'],
      ['  INSERT into audit_logs …', 'I'],
      ['with moved as (update …) select …', 'I'],
      ['COMMIT;', 'T'],
      ['commit', 'E'],
      ['delete from droplets', null],
    ] as const) {
      const error = lost()
      noteLostConnection(error, sql, status, 1_000)
      const mapped = toDataError(error)
      expect(mapped).toBeInstanceOf(UnavailableError)
      expect((mapped as UnavailableError).commitUnknown, `${sql} (${status})`).toBe(true)
      expect((mapped as UnavailableError).message).toMatch(/may or may not have been applied/)
    }
  })

  it('is not when nothing can have been committed: a read, a BEGIN, a statement inside a transaction', () => {
    for (const [sql, status] of [
      ['select * from droplets', 'I'],
      ['begin; select set_config($1, $2, true)', 'I'],
      ['update droplets set status = $1', 'T'],
      ['insert into audit_logs …', 'E'],
      ['rollback', 'T'],
    ] as const) {
      const error = lost()
      noteLostConnection(error, sql, status, 1_000)
      const mapped = toDataError(error) as UnavailableError
      expect(mapped.commitUnknown, `${sql} (${status})`).toBe(false)
    }
  })
})
