/**
 * Describes a connection for messages and logs: host, port and database, never the password or the full URL.
 *
 * @internal
 */
export function describeConnection(connection: string | { host?: string; port?: number; database?: string }): string {
  if (typeof connection === 'string') {
    try {
      const url = new URL(connection)
      const database = url.pathname.replace(/^\//, '') || '(default database)'
      return `${url.hostname || 'localhost'}:${url.port || '5432'}/${decodeURIComponent(database)}`
    } catch {
      return '(unparseable connection string)'
    }
  }
  return `${connection.host ?? 'localhost'}:${connection.port ?? 5432}/${connection.database ?? '(default database)'}`
}
