/**
 * A TCP proxy on loopback that tests put between the library and PostgreSQL to make network faults happen for
 * real: connections reset with a TCP RST, a middlebox that silently stops forwarding, a host that refuses
 * connections, a failover to another server. It only moves bytes (it knows nothing of the PostgreSQL protocol).
 *
 * ```ts
 * const proxy = await startFaultProxy({ port: serverPort })
 * const db = await createDatabase({ connection: proxy.urlFor(url) })
 * proxy.blackhole() // every query in flight now waits for an answer that never comes
 * await proxy.close()
 * ```
 *
 * `close()` destroys every socket it holds, so a closed proxy never keeps the test process alive.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

/** A running proxy; see {@link startFaultProxy}. */
export interface FaultProxy {
  /** The loopback port the proxy listens on (the same after `refuse()` and `accept()`). */
  readonly port: number
  /**
   * A `postgres://…` URL pointing at the proxy instead of the target (same user, password, database, query; a
   * `host` or `port` query parameter, which would bypass the proxy, is removed).
   */
  urlFor(targetUrl: string): string
  /**
   * Connections currently open through the proxy: one counts until its client has closed it or sent its FIN (even
   * when that FIN is dropped by a black hole).
   */
  readonly connections: number
  /** Resets every open connection with a TCP RST on the client side (socket.resetAndDestroy()) and the server side. */
  resetAll(): void
  /**
   * A middlebox that silently stops forwarding: open connections stay open (no FIN, no RST) but bytes in either
   * direction are dropped from now on; new connections are accepted and then also swallowed. A FIN is dropped too:
   * a client ending a black-holed connection gets no FIN back, and the server side stays open until `close()`.
   *
   * On loopback the client's bytes are acknowledged and its keepalive probes answered by the proxy's own socket,
   * so nothing at the TCP level notices: only application-level timeouts can.
   */
  blackhole(): void
  /**
   * New connections are refused (the listener closes): as when a host is gone. Open connections are left as they
   * are. `accept()` undoes it.
   */
  refuse(): Promise<void>
  /** Listens again on the same port after `refuse()`. */
  accept(): Promise<void>
  /** Back to forwarding normally for new connections (connections black-holed stay dead). */
  heal(): void
  /** Points new connections at another target port (e.g. after a failover); `host` is unchanged when omitted. */
  retarget(port: number, host?: string): void
  /** Stops listening and destroys every socket; resolves once all of them have closed. */
  close(): Promise<void>
}

/** One connection through the proxy; `server` is absent for a connection swallowed by a black hole. */
interface Pair {
  readonly client: Socket
  readonly server: Socket | undefined
  /** Black-holed: nothing more is forwarded in either direction, not even a FIN. */
  dead: boolean
}

const LOOPBACK = '127.0.0.1'

/** Ends a socket with a TCP RST when it has a connection, else just destroys it. */
function abort(socket: Socket): void {
  if (socket.destroyed) return
  if (socket.connecting) socket.destroy()
  else socket.resetAndDestroy()
}

/** Copies `from`'s bytes, its FIN and its RST to `to` for as long as the pair is not black-holed. */
function forward(pair: Pair, from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (pair.dead || to.destroyed || to.writableEnded) return
    if (!to.write(chunk)) {
      from.pause()
      to.once('drain', () => from.resume())
    }
  })
  from.on('end', () => {
    if (!pair.dead && !to.destroyed && !to.writableEnded) to.end()
  })
  from.on('close', (hadError) => {
    if (pair.dead) return
    if (hadError) abort(to)
    else if (!to.destroyed && !to.writableEnded) to.end()
  })
}

/**
 * Starts a proxy on 127.0.0.1 (an ephemeral port) that forwards every connection to `target` (host 127.0.0.1 by
 * default) until a fault is asked for.
 */
export async function startFaultProxy(target: { host?: string; port: number }): Promise<FaultProxy> {
  let to = { host: target.host ?? LOOPBACK, port: target.port }
  let blackholed = false
  let closed = false
  const pairs = new Set<Pair>()
  /** Every socket not yet closed, client and server sides, black-holed or not. */
  const sockets = new Set<Socket>()
  const clients = new Set<Socket>()

  const track = (socket: Socket): void => {
    sockets.add(socket)
    // Errors end the socket ('close' follows); what the other side sees is decided in `forward`.
    socket.on('error', () => undefined)
    socket.once('close', () => sockets.delete(socket))
  }

  const onConnection = (client: Socket): void => {
    track(client)
    if (closed) {
      client.destroy()
      return
    }
    clients.add(client)
    client.setNoDelay(true)
    let server: Socket | undefined
    if (!blackholed) {
      server = connect({ host: to.host, port: to.port, allowHalfOpen: true })
      track(server)
      server.setNoDelay(true)
    }
    const pair: Pair = { client, server, dead: blackholed }
    pairs.add(pair)
    client.once('end', () => clients.delete(client))
    client.once('close', () => {
      clients.delete(client)
      if (server === undefined || server.destroyed) pairs.delete(pair)
    })
    server?.once('close', () => {
      if (client.destroyed) pairs.delete(pair)
    })
    if (server === undefined) {
      // Swallowed: read and drop whatever comes, answer nothing.
      client.on('data', () => undefined)
      return
    }
    forward(pair, client, server)
    forward(pair, server, client)
  }

  const listen = (port: number): Promise<Server> =>
    new Promise((resolve, reject) => {
      const server = createServer({ allowHalfOpen: true }, onConnection)
      server.once('error', reject)
      server.listen(port, LOOPBACK, () => {
        server.off('error', reject)
        server.on('error', () => undefined)
        resolve(server)
      })
    })

  let listener: Server | undefined = await listen(0)
  const address = listener.address()
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address')
  const port = address.port

  /** Closes the listening socket now; connections it accepted stay. */
  const stopListening = async (): Promise<void> => {
    const server = listener
    listener = undefined
    if (server === undefined) return
    // The port is free once the handle is closed; the callback only comes once its connections are gone too.
    server.close(() => undefined)
    await new Promise((resolve) => setImmediate(resolve))
  }

  return {
    port,
    get connections() {
      return clients.size
    },
    urlFor(targetUrl) {
      const url = new URL(targetUrl)
      url.hostname = LOOPBACK
      url.port = String(port)
      url.searchParams.delete('host')
      url.searchParams.delete('port')
      return url.toString()
    },
    resetAll() {
      for (const pair of pairs) {
        abort(pair.client)
        if (pair.server !== undefined) abort(pair.server)
      }
    },
    blackhole() {
      blackholed = true
      for (const pair of pairs) {
        pair.dead = true
        // Paused while waiting for the other side to drain: keep reading, so the bytes are dropped, not held.
        pair.client.resume()
        pair.server?.resume()
      }
    },
    refuse: stopListening,
    async accept() {
      if (closed) throw new Error('the proxy is closed')
      listener ??= await listen(port)
    },
    heal() {
      blackholed = false
    },
    retarget(newPort, host) {
      to = { host: host ?? to.host, port: newPort }
    },
    async close() {
      if (closed) return
      closed = true
      const server = listener
      listener = undefined
      const done = [...sockets].map((socket) => new Promise((resolve) => socket.once('close', resolve)))
      if (server !== undefined) done.push(new Promise((resolve) => server.close(resolve)))
      for (const socket of sockets) socket.destroy()
      await Promise.all(done)
    },
  }
}
