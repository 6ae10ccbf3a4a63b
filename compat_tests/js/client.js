// kafkajs against the gateway, one step per run, driven by compat_tests/test_kafkajs.py.
// Every step prints one JSON line on stdout; bytes travel as base64 so the test compares them exactly.
//
//   node client.js <bootstrap> produce <topic> <count>
//   node client.js <bootstrap> consume <topic[,topic...]> <group> <count>
//   node client.js <bootstrap> drain <topic> <group>
//   node client.js <bootstrap> admin-create <topic> <partitions>
//   node client.js <bootstrap> admin-inspect <topic> <group>
//   node client.js <bootstrap> admin-lag <topic> <group>
//   node client.js <bootstrap> admin-delete <topic>
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, step, ...args] = process.argv.slice(2)
const kafka = new Kafka({
  clientId: 'flexlog-compat-kafkajs',
  brokers: [bootstrap],
  logLevel: logLevel.ERROR,
  retry: { retries: 5, initialRetryTime: 100 },
})

const b64 = (buf) => (buf === null || buf === undefined ? null : Buffer.from(buf).toString('base64'))

// Record i's key, value and headers; the values hold every byte value so that no text
// conversion anywhere on the way goes unnoticed.
function record(i) {
  const all = Buffer.from([...Array(256).keys()])
  return {
    key: Buffer.from(`key-${i}`),
    value: Buffer.concat([Buffer.from(`value-${i}:`), all]),
    headers: { seq: Buffer.from(String(i)), bin: Buffer.from([0, 255, i % 256]) },
  }
}

async function produce(topic, count) {
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const messages = [...Array(Number(count)).keys()].map(record)
  const sent = await producer.send({ topic, acks: -1, messages })
  await producer.disconnect()
  return { sent: messages.length, partitions: sent.map((r) => r.partition).sort() }
}

// Reads `count` records in the group, committing each one's offset after recording it, then
// leaves. Records delivered after the count are neither recorded nor committed: the next run
// of the group must get them.
async function consume(topics, group, count) {
  const want = Number(count)
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topics: topics.split(','), fromBeginning: true })
  const got = []
  let finish
  const finished = new Promise((resolve) => { finish = resolve })
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      if (got.length >= want) return
      got.push({
        topic,
        partition,
        offset: message.offset,
        key: b64(message.key),
        value: b64(message.value),
        headers: Object.fromEntries(Object.entries(message.headers).map(([k, v]) => [k, b64(v)])),
      })
      const next = (BigInt(message.offset) + 1n).toString()
      await consumer.commitOffsets([{ topic, partition, offset: next }])
      if (got.length === want) finish()
    },
  })
  const timeout = setTimeout(finish, 20000)
  await finished
  clearTimeout(timeout)
  await consumer.disconnect()
  return { records: got }
}

// Reads in the group with kafkajs' auto-commit until the last batch of every assigned partition
// reports an offset lag of 0 (kafkajs' own lag: high watermark - 1 - the batch's last offset),
// then leaves. Reports the offsets read and each partition's last reported lag. A batch of control
// records only (a transaction marker, an ordered partition's gap) resolves its offsets but commits
// them only when autoCommitThreshold or autoCommitInterval says so, and leaving commits nothing:
// a threshold of 1 commits them before the batch's END_BATCH_PROCESS.
async function drain(topic, group) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const offsets = []
  const lags = {}
  let assigned = []
  let finish
  const finished = new Promise((resolve) => { finish = resolve })
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => { assigned = payload.memberAssignment[topic] })
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    lags[payload.partition] = payload.offsetLag
    if (assigned.length && assigned.every((p) => lags[p] === '0')) finish()
  })
  await consumer.run({
    autoCommitThreshold: 1,
    eachMessage: async ({ partition, message }) => { offsets.push({ partition, offset: message.offset }) },
  })
  const timeout = setTimeout(finish, 20000)
  await finished
  clearTimeout(timeout)
  await consumer.disconnect()
  return { offsets, lags }
}

async function adminCreate(topic, partitions) {
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: Number(partitions), replicationFactor: 1 }],
    waitForLeaders: true,
  })
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] })
  await admin.disconnect()
  return { created, createdAgain: again }
}

async function adminInspect(topic, group) {
  const admin = kafka.admin()
  await admin.connect()
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] })
  const topics = await admin.listTopics()
  const groups = await admin.listGroups()
  const described = await admin.describeGroups([group])
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  await admin.disconnect()
  return {
    partitions: metadata.topics[0].partitions.map((p) => p.partitionId).sort(),
    listed: topics.includes(topic),
    groups: groups.groups,
    described: described.groups.map((g) => ({ groupId: g.groupId, state: g.state, protocolType: g.protocolType, members: g.members.length })),
    offsets: offsets[0].partitions.map((p) => ({ partition: p.partition, offset: p.offset })),
  }
}

// Per partition: the high watermark and the group's committed offset, as a lag monitor built on
// kafkajs reads them (lag = high - committed).
async function adminLag(topic, group) {
  const admin = kafka.admin()
  await admin.connect()
  const ends = await admin.fetchTopicOffsets(topic)
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  await admin.disconnect()
  const of = Object.fromEntries(committed.partitions.map((p) => [p.partition, p.offset]))
  return ends.map((p) => ({ partition: p.partition, high: p.high, committed: of[p.partition] }))
    .sort((a, b) => a.partition - b.partition)
}

async function adminDelete(topic) {
  const admin = kafka.admin()
  await admin.connect()
  await admin.deleteTopics({ topics: [topic] })
  const topics = await admin.listTopics()
  await admin.disconnect()
  return { listed: topics.includes(topic) }
}

const steps = {
  produce,
  consume,
  drain,
  'admin-create': adminCreate,
  'admin-inspect': adminInspect,
  'admin-lag': adminLag,
  'admin-delete': adminDelete,
}

steps[step](...args).then(
  (result) => { process.stdout.write(JSON.stringify(result) + '\n') },
  (err) => { console.error(err); process.exit(1) },
)
