import { ConfigError } from '../../errors/index.js'

/**
 * Which server of a multi-host `connection` the pool connects to, as libpq's `target_session_attrs`:
 * - `'read-write'` (the default with several hosts): one that accepts writes (`transaction_read_only` is off);
 * - `'primary'`: one that is not in recovery;
 * - `'any'` (the default with one host): the first that answers.
 *
 * @example
 * ```ts
 * const attrs: TargetSessionAttrs = 'read-write'
 * ```
 */
export type TargetSessionAttrs = 'any' | 'read-write' | 'primary'

const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'primary']

/** One host of a `connection`: its name (`host:port`) and the pg settings that point a connection at it. @internal */
export interface HostTarget {
  readonly name: string
  readonly settings: Readonly<{ connectionString: string } | { host: string; port: number }>
}

/**
 * The hosts of a `connection` and what a connection must find on them; undefined for a plain single-host
 * connection, which needs no choosing.
 *
 * @internal
 */
export interface ConnectionTargets {
  readonly hosts: readonly HostTarget[]
  readonly targetSessionAttrs: TargetSessionAttrs
}

/** `scheme://userinfo@hosts/rest`: the host list is what `new URL` cannot read. */
const URL_PARTS = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/i

/** `host`, `host:port`, `[v6]` or `[v6]:port`. */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d*))?$/

function checkAttrs(value: unknown, field: string): TargetSessionAttrs {
  if (!TARGET_SESSION_ATTRS.includes(value as TargetSessionAttrs)) {
    throw new ConfigError(field, `must be one of ${TARGET_SESSION_ATTRS.join(', ')}.`)
  }
  return value as TargetSessionAttrs
}

/** What a port must be, said alike for every way of getting it wrong. */
const PORT_RULE = 'a port must be a whole number from 1 to 65535 (PostgreSQL listens on 5432 unless told otherwise).'

function checkPort(text: string | undefined, field: string): number {
  if (text === undefined || text === '') return 5432
  const port = Number(text)
  // Only digits reach here, so the port can be repeated: nothing of the password is in it.
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new ConfigError(field, `has port ${text}: ${PORT_RULE}`)
  }
  return port
}

/**
 * Why entry `i` of a URL's host list is not `host[:port]`. The entry is never repeated: with a password whose `@` was
 * not encoded, it holds part of the password.
 */
function badHostEntry(item: string, i: number, count: number): string {
  if (item.includes('@')) {
    return 'has an @ after the user name and password: URL-encode the password (@ is %40, : is %3A, / is %2F).'
  }
  const where = count > 1 ? ` (host ${i + 1} of ${count})` : ''
  if (/^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):[^:]*$/.test(item)) return `has a port that is not a number${where}: ${PORT_RULE}`
  if (count === 1) return 'has a host that is not host[:port] (an IPv6 address goes in brackets: [::1]:5432).'
  return `has a host list whose entry ${i + 1} is not host[:port].`
}

/**
 * The hosts of a connection URL (`postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write`), each as a
 * single-host URL without `target_session_attrs` (which pg does not know). Throws a `ConfigError` for a URL that is
 * not one.
 *
 * @internal
 */
export function urlTargets(value: string): ConnectionTargets | undefined {
  const parts = URL_PARTS.exec(value)
  if (parts === null) throw new ConfigError('connection', 'must be a postgres:// or postgresql:// URL.')
  const [, scheme, userinfo = '', hostList = '', rest = ''] = parts
  const queryAt = rest.indexOf('?')
  const path = queryAt < 0 ? rest : rest.slice(0, queryAt)
  const params = new URLSearchParams(queryAt < 0 ? '' : rest.slice(queryAt + 1))
  const attrs = params.get('target_session_attrs')
  params.delete('target_session_attrs')
  const query = params.size > 0 ? `?${params.toString()}` : ''
  const hosts = hostList === '' ? [] : hostList.split(',')
  const targets = hosts.map((item, i): HostTarget => {
    const match = HOST_PORT.exec(item)
    if (match === null) throw new ConfigError('connection', badHostEntry(item, i, hosts.length))
    const port = checkPort(match[2], 'connection')
    const url = `${scheme}${userinfo}${match[1]}:${port}${path}${query}`
    try {
      new URL(url)
    } catch {
      throw new ConfigError('connection', 'must be a postgres:// or postgresql:// URL.')
    }
    return { name: `${match[1]}:${port}`, settings: { connectionString: url } }
  })
  if (targets.length === 0) {
    try {
      new URL(value)
    } catch {
      throw new ConfigError('connection', 'must be a postgres:// or postgresql:// URL.')
    }
  }
  if (targets.length > 16) throw new ConfigError('connection', 'lists more than 16 hosts.')
  if (attrs === null && targets.length <= 1) return undefined
  const targetSessionAttrs = attrs === null ? 'read-write' : checkAttrs(attrs, 'connection.target_session_attrs')
  return {
    hosts: targets.length === 0 ? [{ name: 'localhost:5432', settings: { connectionString: value } }] : targets,
    targetSessionAttrs,
  }
}

/**
 * The hosts of connection fields with `hosts` (and `targetSessionAttrs`); undefined without them.
 *
 * @internal
 */
export function fieldTargets(value: Record<string, unknown>): ConnectionTargets | undefined {
  if (value.hosts === undefined) {
    if (value.targetSessionAttrs === undefined) return undefined
    const host = typeof value.host === 'string' ? value.host : 'localhost'
    const port = typeof value.port === 'number' ? value.port : 5432
    return {
      hosts: [{ name: `${host}:${port}`, settings: { host, port } }],
      targetSessionAttrs: checkAttrs(value.targetSessionAttrs, 'connection.targetSessionAttrs'),
    }
  }
  if (value.host !== undefined || value.port !== undefined) {
    throw new ConfigError('connection.hosts', 'replaces host and port: give one or the other.')
  }
  if (!Array.isArray(value.hosts) || value.hosts.length === 0 || value.hosts.length > 16) {
    throw new ConfigError('connection.hosts', 'must be a list of 1 to 16 { host, port } entries.')
  }
  const hosts = (value.hosts as unknown[]).map((entry, i): HostTarget => {
    const field = `connection.hosts[${i}]`
    const item = entry as { host?: unknown; port?: unknown } | null
    if (typeof item !== 'object' || item === null || typeof item.host !== 'string' || item.host === '') {
      throw new ConfigError(field, 'must be { host, port? } with a non-empty host.')
    }
    if (Object.keys(item).some((key) => key !== 'host' && key !== 'port')) {
      throw new ConfigError(field, 'may only have host and port.')
    }
    const port = item.port === undefined ? 5432 : item.port
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new ConfigError(`${field}.port`, 'must be an integer from 1 to 65535.')
    }
    return { name: `${item.host}:${port}`, settings: { host: item.host, port } }
  })
  const targetSessionAttrs =
    value.targetSessionAttrs === undefined
      ? 'read-write'
      : checkAttrs(value.targetSessionAttrs, 'connection.targetSessionAttrs')
  return { hosts, targetSessionAttrs }
}
