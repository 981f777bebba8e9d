// kafkajs driver for Fjord's black-box tests.
//
// Reads one JSON request on stdin: {"op": "...", "brokers": ["host:port"], ...params}
// performs it with kafkajs 2.2.x against the real broker, and prints one JSON line:
// (on a line starting with 'FJORD-REPLY '):
//   {"ok": true, "result": ...}   or   {"ok": false, "error": {name, type, code, message, errors}}
// Binary keys/values/header values travel base64-encoded in both directions.
// The process exits 0 whenever it could print a reply; pytest judges the reply.

'use strict'

const { Kafka, logLevel, CompressionTypes } = require('kafkajs')
const Cluster = require('kafkajs/src/cluster')
const { createLogger, LEVELS } = require('kafkajs/src/loggers')
const LoggerConsole = require('kafkajs/src/loggers/console')
const socketFactory = require('kafkajs/src/network/socketFactory')

const RETRY = { retries: 3, initialRetryTime: 200, maxRetryTime: 2000 }

function readStdin() {
  return new Promise((resolve, reject) => {
    let data = ''
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', chunk => (data += chunk))
    process.stdin.on('end', () => resolve(data))
    process.stdin.on('error', reject)
  })
}

// The reply line carries a marker so that log lines on stdout cannot be mistaken for it.
// Resolves once the line is flushed: stdout to a pipe is asynchronous, so
// exiting right after write() can cut a long reply.
function reply(obj) {
  return new Promise(resolve => process.stdout.write('FJORD-REPLY ' + JSON.stringify(obj) + '\n', resolve))
}

const b64 = buf => (buf == null ? null : Buffer.from(buf).toString('base64'))
const unb64 = s => (s == null ? null : Buffer.from(s, 'base64'))

function client(req) {
  return new Kafka({
    clientId: 'fjord-blackbox-kafkajs',
    brokers: req.brokers,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: RETRY,
    logLevel: logLevel.WARN,
  })
}

function errorToJson(e) {
  return {
    name: e && e.name,
    type: e && e.type,
    code: e && e.code,
    message: e && e.message,
    retriable: e && e.retriable,
    errors: e && Array.isArray(e.errors) ? e.errors.map(errorToJson) : undefined,
    cause: e && e.cause ? errorToJson(e.cause) : undefined,
  }
}

async function withAdmin(req, fn) {
  const admin = client(req).admin({ retry: RETRY })
  await admin.connect()
  try {
    return await fn(admin)
  } finally {
    await admin.disconnect()
  }
}

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
}

async function produce(req) {
  const producer = client(req).producer({
    allowAutoTopicCreation: req.allowAutoTopicCreation !== false,
    retry: RETRY,
  })
  await producer.connect()
  try {
    const messages = req.messages.map(m => {
      const out = { value: unb64(m.value) }
      if (m.key !== undefined) out.key = unb64(m.key)
      if (m.partition !== undefined && m.partition !== null) out.partition = m.partition
      if (m.timestamp !== undefined && m.timestamp !== null) out.timestamp = String(m.timestamp)
      if (m.headers) {
        out.headers = {}
        for (const [k, v] of Object.entries(m.headers)) out.headers[k] = unb64(v)
      }
      return out
    })
    const result = await producer.send({
      topic: req.topic,
      acks: req.acks === undefined ? -1 : req.acks,
      timeout: 10000,
      compression: COMPRESSION[req.compression || 'none'],
      messages,
    })
    return result
  } finally {
    await producer.disconnect()
  }
}

// Idempotent producer (idempotent: true, acks -1): `sends` is a list of
// message lists, all sent concurrently (up to maxInFlightRequests in flight)
// to req.partition; returns each send's result in order.
async function produceIdempotent(req) {
  const producer = client(req).producer({
    idempotent: true,
    maxInFlightRequests: req.maxInFlightRequests || 5,
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  try {
    const sends = req.sends.map(values =>
      producer.send({
        topic: req.topic,
        acks: -1,
        timeout: 10000,
        messages: values.map(v => ({ value: unb64(v), partition: req.partition || 0 })),
      })
    )
    return await Promise.all(sends)
  } finally {
    await producer.disconnect()
  }
}

// Transactional producer (transactionalId): each entry of req.transactions
// is {sends: [{topic, partition, values}], offsets?: {groupId, topics}, action:
// 'commit' | 'abort'} run as producer.transaction() → send… → sendOffsets →
// commit/abort, in order; returns each send's result.
async function produceTransactional(req) {
  const producer = client(req).producer({
    transactionalId: req.transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: req.transactionTimeout || 60000,
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  try {
    const out = []
    for (const t of req.transactions) {
      const txn = await producer.transaction()
      for (const s of t.sends) {
        out.push(
          await txn.send({
            topic: s.topic,
            acks: -1,
            timeout: 10000,
            messages: s.values.map(v => ({ value: unb64(v), partition: s.partition || 0 })),
          })
        )
      }
      if (t.offsets) await txn.sendOffsets({ consumerGroupId: t.offsets.groupId, topics: t.offsets.topics })
      if (t.action === 'abort') await txn.abort()
      else await txn.commit()
    }
    return out
  } finally {
    await producer.disconnect()
  }
}

// Low-level fetch through kafkajs' own Cluster/Broker classes: kafkajs' consumer
// API requires consumer groups, which Fjord does not serve yet.
async function fetchRecords(req) {
  const rootLogger = createLogger({ level: LEVELS.WARN, logCreator: LoggerConsole })
  const cluster = new Cluster({
    logger: rootLogger,
    socketFactory: socketFactory(),
    brokers: req.brokers,
    clientId: 'fjord-blackbox-kafkajs-fetch',
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: RETRY,
    isolationLevel: 1,
  })
  await cluster.connect()
  try {
    await cluster.addTargetTopic(req.topic)
    await cluster.refreshMetadata()
    const byLeader = cluster.findLeaderForPartitions(req.topic, [req.partition])
    const nodeId = Object.keys(byLeader)[0]
    const broker = await cluster.findBroker({ nodeId })
    let offset = BigInt(req.offset || 0)
    const records = []
    const deadline = Date.now() + (req.timeoutMs || 20000)
    let highWatermark = null
    while (Date.now() < deadline) {
      const resp = await broker.fetch({
        replicaId: -1,
        isolationLevel: 1,
        maxWaitTime: req.maxWaitTime || 500,
        minBytes: 1,
        maxBytes: 10485760,
        topics: [{ topic: req.topic, partitions: [{ partition: req.partition, fetchOffset: String(offset), maxBytes: 10485760 }] }],
      })
      const part = resp.responses[0].partitions[0]
      if (part.errorCode !== 0) {
        return { errorCode: part.errorCode, records }
      }
      highWatermark = part.highWatermark
      for (const m of part.messages) {
        if (BigInt(m.offset) < offset) continue
        records.push({
          offset: m.offset,
          key: b64(m.key),
          value: b64(m.value),
          timestamp: m.timestamp,
          headers: Object.fromEntries(Object.entries(m.headers || {}).map(([k, v]) => [k, b64(v)])),
        })
        offset = BigInt(m.offset) + 1n
      }
      if (req.count !== undefined && records.length >= req.count) break
      if (req.count === undefined && offset >= BigInt(highWatermark)) break
    }
    return { errorCode: 0, highWatermark, records }
  } finally {
    await cluster.disconnect()
  }
}

// A kafkajs group consumer through its normal API (subscribe + run), with
// autoCommit off and commitOffsets after each batch; stops after `count`
// records or `timeoutMs`. Returns the records read and the group's committed
// offsets as admin.fetchOffsets reports them, plus admin.describeGroups.
async function groupConsume(req) {
  const kafka = client(req)
  const consumer = kafka.consumer({ groupId: req.groupId, sessionTimeout: 10000, rebalanceTimeout: 10000, retry: RETRY })
  await consumer.connect()
  const records = []
  let described = null
  try {
    await consumer.subscribe({ topics: [req.topic], fromBeginning: true })
    let done
    const finished = new Promise(resolve => (done = resolve))
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          records.push({ partition: batch.partition, offset: m.offset, value: b64(m.value) })
        }
        const next = String(BigInt(batch.lastOffset()) + 1n)
        await consumer.commitOffsets([{ topic: req.topic, partition: batch.partition, offset: next }])
        if (records.length >= req.count) done()
      },
    })
    const timer = setTimeout(done, req.timeoutMs || 30000)
    await finished
    clearTimeout(timer)
    described = await withAdmin(req, admin => admin.describeGroups([req.groupId]))
  } finally {
    await consumer.disconnect()
  }
  const offsets = await withAdmin(req, admin => admin.fetchOffsets({ groupId: req.groupId, topics: [req.topic] }))
  return { records, offsets, described }
}

// The kafkajs getting-started tutorial against all of req.brokers: admin
// createTopics (numPartitions, replicationFactor), producer.send acks -1 of
// the keyed messages, then consumer({groupId}).subscribe({fromBeginning: true})
// .run({eachMessage}) (autoCommit on) until req.count records or timeoutMs.
// Returns the createTopics result, the send result, the records read and the
// group's committed offsets (admin.fetchOffsets after the consumer left).
async function tutorial(req) {
  const kafka = client(req)
  const created = await withAdmin(req, admin =>
    admin.createTopics({
      topics: [{ topic: req.topic, numPartitions: req.numPartitions, replicationFactor: req.replicationFactor }],
      waitForLeaders: true,
      timeout: 10000,
    })
  )
  const producer = kafka.producer({ retry: RETRY })
  await producer.connect()
  let sent
  try {
    sent = await producer.send({
      topic: req.topic,
      acks: -1,
      messages: req.messages.map(m => ({ key: unb64(m.key), value: unb64(m.value) })),
    })
  } finally {
    await producer.disconnect()
  }
  const consumer = kafka.consumer({ groupId: req.groupId, sessionTimeout: 10000, rebalanceTimeout: 10000, retry: RETRY })
  await consumer.connect()
  const records = []
  try {
    await consumer.subscribe({ topic: req.topic, fromBeginning: true })
    let done
    const finished = new Promise(resolve => (done = resolve))
    await consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        records.push({ topic, partition, offset: message.offset, key: b64(message.key), value: b64(message.value) })
        if (records.length >= req.count) done()
      },
    })
    const timer = setTimeout(done, req.timeoutMs || 30000)
    await finished
    clearTimeout(timer)
  } finally {
    await consumer.disconnect()
  }
  const offsets = await withAdmin(req, admin => admin.fetchOffsets({ groupId: req.groupId, topics: [req.topic] }))
  return { created, sent, records, offsets }
}

// The exactly-once consume-transform-produce loop: a read_committed group
// consumer of req.input; each batch is sent upper-cased to req.output (same
// partition) with the batch's next offset through producer.transaction() →
// send → sendOffsets → commit. On an error the transaction is aborted and the
// batch thrown back to kafkajs, which fetches it again from the committed
// offset. Stops once req.total records were committed; returns the errors seen.
async function exactlyOnceLoop(req) {
  const kafka = client(req)
  const retry = { retries: 10, initialRetryTime: 200, maxRetryTime: 2000 }
  const producer = kafka.producer({ transactionalId: req.transactionalId, idempotent: true, maxInFlightRequests: 1, retry })
  const consumer = kafka.consumer({ groupId: req.groupId, readUncommitted: false, sessionTimeout: 10000, retry })
  const errors = []
  let committed = 0
  await producer.connect()
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [req.input], fromBeginning: true })
    let done
    const finished = new Promise(resolve => (done = resolve))
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        if (batch.messages.length === 0) return
        const txn = await producer.transaction()
        try {
          await txn.send({
            topic: req.output,
            acks: -1,
            messages: batch.messages.map(m => ({ key: m.key, value: m.value.toString().toUpperCase(), partition: batch.partition })),
          })
          const next = String(BigInt(batch.lastOffset()) + 1n)
          await txn.sendOffsets({
            consumerGroupId: req.groupId,
            topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
          })
          await txn.commit()
        } catch (e) {
          errors.push(String(e && e.message))
          try {
            await txn.abort()
          } catch (e2) {
            errors.push('abort: ' + String(e2 && e2.message))
          }
          throw e
        }
        for (const m of batch.messages) resolveOffset(m.offset)
        committed += batch.messages.length
        if (committed >= req.total) done()
      },
    })
    await finished
  } finally {
    await consumer.disconnect()
    await producer.disconnect()
  }
  return { committed, errors }
}

const OPS = {
  groupConsume,
  produce,
  produceIdempotent,
  fetch: fetchRecords,
  produceTransactional,
  exactlyOnceLoop,
  tutorial,
  createTopics: req =>
    withAdmin(req, admin =>
      admin.createTopics({ topics: req.topics, validateOnly: !!req.validateOnly, waitForLeaders: true, timeout: 10000 })
    ),
  deleteTopics: req => withAdmin(req, admin => admin.deleteTopics({ topics: req.topics, timeout: 10000 })),
  listTopics: req => withAdmin(req, admin => admin.listTopics()),
  fetchTopicMetadata: req => withAdmin(req, admin => admin.fetchTopicMetadata({ topics: req.topics })),
  fetchTopicOffsets: req => withAdmin(req, admin => admin.fetchTopicOffsets(req.topic)),
  fetchTopicOffsetsByTimestamp: req =>
    withAdmin(req, admin => admin.fetchTopicOffsetsByTimestamp(req.topic, req.timestamp)),
  createPartitions: req =>
    withAdmin(req, admin => admin.createPartitions({ topicPartitions: req.topicPartitions, timeout: 10000 })),
  describeConfigs: req =>
    withAdmin(req, admin => admin.describeConfigs({ resources: req.resources, includeSynonyms: false })),
  describeCluster: req => withAdmin(req, admin => admin.describeCluster()),
  alterConfigs: req =>
    withAdmin(req, admin => admin.alterConfigs({ resources: req.resources, validateOnly: !!req.validateOnly })),
  deleteTopicRecords: req =>
    // kafkajs looks up leaders from cached metadata only: load the topic's first.
    withAdmin(req, async admin => {
      await admin.fetchTopicMetadata({ topics: [req.topic] })
      return admin.deleteTopicRecords({ topic: req.topic, partitions: req.partitions })
    }),
}

async function main() {
  let req
  try {
    req = JSON.parse(await readStdin())
  } catch (e) {
    await reply({ ok: false, error: { name: 'BadRequest', message: String(e) } })
    return
  }
  armTimeout(req.driverTimeoutMs || 50000)
  const op = OPS[req.op]
  if (!op) {
    await reply({ ok: false, error: { name: 'UnknownOp', message: req.op } })
    return
  }
  try {
    const result = await op(req)
    await reply({ ok: true, result: result === undefined ? null : result })
  } catch (e) {
    await reply({ ok: false, error: errorToJson(e) })
  }
}

// A hung kafkajs call must not hang the test: pytest also has its own timeout.
// req.driverTimeoutMs raises the 50 s default for long operations.
function armTimeout(ms) {
  setTimeout(() => {
    reply({ ok: false, error: { name: 'DriverTimeout', message: `driver timed out after ${ms / 1000} s` } }).then(() =>
      process.exit(0)
    )
  }, ms).unref()
}

main().then(() => process.exit(0))
