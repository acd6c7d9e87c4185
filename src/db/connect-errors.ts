import { ConfigError, isDataError, UnavailableError, type DataError } from '../errors/index.js'
import { quoteIdentifier } from '../internal/identifiers.js'
import { describeConnection } from '../internal/redact.js'
import type { ConnectionOptions } from './config/connection.js'
import { fieldTargets, urlTargets } from './config/hosts.js'

/**
 * Where the first connection of `createDatabase` was going, for the messages of {@link connectError}. It never holds
 * a password.
 *
 * @example
 * ```ts
 * const attempt: ConnectAttempt = { servers: ['127.0.0.1:5432'], database: 'wincloud', user: 'app', timeoutMs: 10_000 }
 * ```
 *
 * @internal
 */
export interface ConnectAttempt {
  /** `host:port` of the server, or of each server of a host list, in order. */
  readonly servers: readonly string[]
  /** The database name, or `(default database)` when the connection names none. */
  readonly database: string
  /** The user name, when the connection gives one (pg takes it from the environment otherwise). */
  readonly user: string | undefined
  /** How long the connection was given to answer, in milliseconds. */
  readonly timeoutMs: number
}

/** The user name of a single-host URL, decoded; undefined when it has none or cannot be read. */
function urlUser(url: string): string | undefined {
  try {
    const user = decodeURIComponent(new URL(url).username)
    return user === '' ? undefined : user
  } catch {
    return undefined
  }
}

/**
 * Where a (checked) `connection` points: its host, or each host of a host list, the database and the user.
 *
 * @example
 * ```ts
 * connectAttempt('postgres://app:pw@10.0.0.1,10.0.0.2:5433/wincloud', 10_000)
 * // { servers: ['10.0.0.1:5432', '10.0.0.2:5433'], database: 'wincloud', user: 'app', timeoutMs: 10_000 }
 * ```
 *
 * @internal
 */
export function connectAttempt(connection: string | ConnectionOptions, timeoutMs: number): ConnectAttempt {
  const targets = typeof connection === 'string' ? urlTargets(connection) : fieldTargets({ ...connection })
  const hosts = targets?.hosts ?? []
  const first = hosts[0]?.settings
  // A URL with a host list is no URL to `new URL`: its first host, as a URL of its own, has the same user and database.
  const single = typeof connection === 'string' && first !== undefined && 'connectionString' in first
  const described = single ? first.connectionString : connection
  const info = describeConnection(described)
  const slash = info.indexOf('/')
  return {
    servers: hosts.length > 1 ? hosts.map((host) => host.name) : [slash < 0 ? info : info.slice(0, slash)],
    database: slash < 0 ? '(default database)' : info.slice(slash + 1),
    user: typeof described === 'string' ? urlUser(described) : described.user,
    timeoutMs,
  }
}

/** A failed first connection, as the rules of {@link RULES} read it. */
interface Failure {
  /** SQLSTATE, Node's error code (`ECONNREFUSED`) or a TLS code; '' when there is none. */
  readonly code: string
  readonly name: string
  readonly message: string
  /** `127.0.0.1:5432/wincloud`, or `h1:5432, h2:5433 (database wincloud)` for a host list. */
  readonly at: string
  /** `127.0.0.1:5432`, or `h1:5432, h2:5433`. */
  readonly servers: string
  /** The user the server names, else the connection's, else a description. */
  readonly user: string
  /** The database the server names, else the connection's. */
  readonly database: string
  /** The host name a DNS lookup did not find. */
  readonly hostname: string
  readonly timeoutMs: number
}

/** One kind of connection failure: how to recognise it, and the error it becomes (`cause` is the driver's). */
interface Rule {
  readonly when: (f: Failure) => boolean
  readonly error: (f: Failure, options: ErrorOptions) => DataError
}

/** A name as it goes into a hint of SQL: bare when it can be, else quoted. */
function sqlName(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : quoteIdentifier(name)
}

const unavailable = (f: Failure, reason: string, options: ErrorOptions): UnavailableError =>
  new UnavailableError(`Could not connect to PostgreSQL at ${f.at}: ${reason}`, options)

const hba = (f: Failure): boolean =>
  f.code === '28000' && /^(no pg_hba\.conf entry|pg_hba\.conf rejects)/.test(f.message)

/** The codes Node's TLS gives a certificate it does not accept. */
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/** The messages pg gives when its connection attempt ran out of time (`connectionTimeoutMillis`). */
const PG_TIMEOUTS = ['timeout expired', 'Connection terminated due to connection timeout']

/**
 * The kinds of connection failure, the first that matches wins. What the host must change in its configuration (the
 * credentials, the database, the role, TLS) is a `ConfigError` on `connection`; what may pass (nothing listens, no
 * answer, no connection slot) an `UnavailableError`.
 */
const RULES: readonly Rule[] = [
  {
    when: (f) => f.code === '28000' && /^role ".*" does not exist$/.test(f.message),
    error: (f, options) =>
      new ConfigError(
        'connection',
        `names user ${f.user}, which does not exist on PostgreSQL at ${f.at} (28000). Fix the user name in the ` +
          `connection string, or create the role: create role ${sqlName(f.user)} login password '…'.`,
        options,
      ),
  },
  {
    when: (f) => hba(f) && f.message.endsWith(', no encryption'),
    error: (f, options) =>
      new ConfigError(
        'connection',
        `was refused by PostgreSQL at ${f.at}: its pg_hba.conf lets user ${f.user} connect to database ` +
          `${f.database} from here only over TLS (28000). Add sslmode=require to the URL (ssl: true in connection ` +
          `fields), or allow the connection without TLS with a host line in pg_hba.conf.`,
        options,
      ),
  },
  {
    when: hba,
    error: (f, options) =>
      new ConfigError(
        'connection',
        `was refused by PostgreSQL at ${f.at}: its pg_hba.conf does not let user ${f.user} connect to database ` +
          `${f.database} from this address (28000). Add a line for them to pg_hba.conf and reload the server.`,
        options,
      ),
  },
  {
    when: (f) => f.code === '28000' && / is not permitted to log in$/.test(f.message),
    error: (f, options) =>
      new ConfigError(
        'connection',
        `names user ${f.user}, which may not log in to PostgreSQL at ${f.at} (28000). Let it ` +
          `(alter role ${sqlName(f.user)} login) or connect as another user.`,
        options,
      ),
  },
  {
    when: (f) => f.code === '28P01' || f.code === '28000',
    error: (f, options) =>
      new ConfigError(
        'connection',
        `was refused by PostgreSQL at ${f.at}: authentication failed for user ${f.user} (${f.code}). Check the ` +
          `password (and the user name) in the connection string.`,
        options,
      ),
  },
  {
    when: (f) => /password must be a string$/i.test(f.message),
    error: (f, options) =>
      new ConfigError(
        'connection',
        `has no password for user ${f.user}, and PostgreSQL at ${f.at} asks for one. Add it to the connection ` +
          `string after the user name and a colon (user:password@host), URL-encoded.`,
        options,
      ),
  },
  {
    when: (f) => f.code === '3D000',
    error: (f, options) =>
      new ConfigError(
        'connection',
        `names database ${f.database}, which does not exist on PostgreSQL at ${f.servers} (3D000). Create it ` +
          `(createdb ${f.database}, or create database ${sqlName(f.database)}) or fix the name in the connection string.`,
        options,
      ),
  },
  {
    when: (f) => f.code === '42501',
    error: (f, options) =>
      new ConfigError(
        'connection',
        `names user ${f.user}, which may not connect to database ${f.database} on PostgreSQL at ${f.servers} ` +
          `(42501). Grant it: grant connect on database ${sqlName(f.database)} to ${sqlName(f.user)}.`,
        options,
      ),
  },
  {
    when: (f) => f.message === 'The server does not support SSL connections',
    error: (f, options) =>
      new ConfigError(
        'connection',
        `asks for TLS (sslmode=require, or ssl in connection fields), but PostgreSQL at ${f.at} does not support ` +
          `TLS connections. Remove sslmode=require (or ssl), or enable TLS on the server (ssl = on, with a certificate).`,
        options,
      ),
  },
  {
    when: (f) => CERTIFICATE_CODES.has(f.code),
    error: (f, options) =>
      new ConfigError(
        'connection',
        `asks for a verified TLS connection, and the certificate of PostgreSQL at ${f.at} was not accepted ` +
          `(${f.code}). Give the certificate of its authority (sslrootcert=…), and connect by the name the ` +
          `certificate is for.`,
        options,
      ),
  },
  {
    when: (f) => f.code === '53300',
    error: (f, options) =>
      unavailable(
        f,
        / for role "/.test(f.message)
          ? `user ${f.user} has as many connections as its connection limit allows (53300). Close idle ` +
              `connections, lower pool.max, or raise the limit (alter role ${sqlName(f.user)} connection limit …).`
          : `the server has no connection slot left (53300: too many connections). Close idle connections, lower ` +
              `pool.max, or raise max_connections.`,
        options,
      ),
  },
  {
    when: (f) => f.code === '57P03',
    error: (f, options) =>
      unavailable(f, 'the server is starting up or shutting down (57P03). Try again in a moment.', options),
  },
  {
    when: (f) => f.code === 'ECONNREFUSED',
    error: (f, options) =>
      unavailable(
        f,
        `nothing listens at ${f.servers} (ECONNREFUSED). Is PostgreSQL running, and is this its port?`,
        options,
      ),
  },
  {
    when: (f) => f.code === 'ENOTFOUND' || f.code === 'EAI_AGAIN',
    error: (f, options) =>
      unavailable(
        f,
        `the host name ${f.hostname} was not found (${f.code}). Check the host in the connection string, and ` +
          `that this machine can resolve it.`,
        options,
      ),
  },
  {
    when: (f) => ['ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'].includes(f.code),
    error: (f, options) =>
      unavailable(
        f,
        `the host cannot be reached (${f.code}). Check the host, and the network and firewalls on the way.`,
        options,
      ),
  },
  {
    when: (f) => f.name === 'KnexTimeoutError' || PG_TIMEOUTS.includes(f.message),
    error: (f, options) =>
      unavailable(
        f,
        `no answer within ${f.timeoutMs} ms. Check the host and port (a firewall may drop the packets) and the ` +
          `server's load; pool.acquireTimeoutMs sets how long to wait.`,
        options,
      ),
  },
  {
    when: (f) => f.code === 'ECONNRESET' || f.message === 'Connection terminated unexpectedly',
    error: (f, options) =>
      unavailable(
        f,
        `the server closed the connection before it was ready${f.code === '' ? '' : ` (${f.code})`}. Is ` +
          `${f.servers} a PostgreSQL server (not a proxy or another service), and what does its log say?`,
        options,
      ),
  },
]

function stringField(value: object, key: string): string {
  const field = (value as Record<string, unknown>)[key]
  return typeof field === 'string' ? field : ''
}

/** The error of the connection (pg's, Node's or knex's) as the rules read it. */
function failureOf(driver: unknown, attempt: ConnectAttempt): Failure {
  const outer = typeof driver === 'object' && driver !== null ? driver : {}
  const nested = (outer as { nativeError?: unknown }).nativeError
  const native = typeof nested === 'object' && nested !== null ? nested : outer
  const message = stringField(native, 'message')
  const servers = attempt.servers.join(', ')
  const database = /database "([^"]*)"/.exec(message)?.[1] ?? attempt.database
  return {
    code: stringField(native, 'code'),
    name: stringField(outer, 'name'),
    message,
    at: attempt.servers.length > 1 ? `${servers} (database ${database})` : `${servers}/${database}`,
    servers,
    user: /(?:user|role) "([^"]*)"/.exec(message)?.[1] ?? attempt.user ?? '(the default user)',
    database,
    hostname: stringField(native, 'hostname') || servers,
    timeoutMs: attempt.timeoutMs,
  }
}

/**
 * The error `createDatabase` throws when its first connection fails: what went wrong, where (host, port and
 * database, or each host of a host list), and what to do. Credentials, a missing database or role, and TLS that
 * the client and the server disagree on are `ConfigError`s on `connection` (the configuration must change);
 * nothing listening, no answer and no free connection slot are `UnavailableError`s. `cause` is the driver's error.
 * Messages name the user but never the password. A library error other than `UnavailableError` is returned as is.
 *
 * @example
 * ```ts
 * try {
 *   await knex.raw('select 1')
 * } catch (error) {
 *   throw connectError(error, connectAttempt(connection, 10_000))
 *   // ConfigError: Invalid configuration: connection was refused by PostgreSQL at 127.0.0.1:5432/wincloud:
 *   // authentication failed for user app (28P01). Check the password (and the user name) in the connection string.
 * }
 * ```
 *
 * @internal
 */
export function connectError(error: unknown, attempt: ConnectAttempt): DataError {
  if (isDataError(error) && !(error instanceof UnavailableError)) return error
  // The host list's search gives up with an UnavailableError whose cause is the last host's error.
  const located = isDataError(error) ? error : undefined
  const driver = located?.cause ?? error
  const failure = failureOf(driver, attempt)
  const rule = RULES.find((candidate) => candidate.when(failure))
  if (rule !== undefined) return rule.error(failure, { cause: driver })
  if (located !== undefined) {
    const reason = located.message.charAt(0).toLowerCase() + located.message.slice(1)
    return new UnavailableError(`Could not connect to PostgreSQL at ${failure.at}: ${reason}`, { cause: driver })
  }
  const code = failure.code === '' ? '' : ` (${failure.code})`
  return new UnavailableError(`Could not connect to PostgreSQL at ${failure.at}${code}.`, { cause: error })
}
