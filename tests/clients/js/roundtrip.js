// Admin, produce and group consume through kafkajs; prints one JSON line with what it read.
// KAFKAJS_SECURITY (JSON, optional): {"sasl": {mechanism, username, password}, "caFile": path}
// for SASL and TLS listeners; OAUTHBEARER's sasl is {"mechanism": "oauthbearer", "token": jwt}.
const fs = require("fs");
const { Kafka, logLevel } = require("kafkajs");

function security() {
  if (!process.env.KAFKAJS_SECURITY) return {};
  const { sasl, caFile } = JSON.parse(process.env.KAFKAJS_SECURITY);
  const ssl = caFile ? { ca: [fs.readFileSync(caFile, "utf-8")] } : false;
  if (sasl && sasl.mechanism === "oauthbearer") {
    const token = sasl.token;
    return { sasl: { mechanism: "oauthbearer", oauthBearerProvider: async () => ({ value: token }) }, ssl };
  }
  return { sasl, ssl };
}

async function main() {
  const [bootstrap, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({
    clientId: "kafkajs-test",
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    ...security(),
  });

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
  const listed = await admin.listTopics();
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) {
    messages.push({ partition: i % 3, key: `k${i}`, value: `v${i}`, headers: { h: `x${i}` } });
  }
  const acks = await producer.send({ topic, messages, acks: -1 });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-group` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${got.length} messages`)), 60000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({
          partition,
          offset: Number(message.offset),
          key: message.key.toString(),
          value: message.value.toString(),
          header: message.headers.h.toString(),
        });
        if (got.length === count) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ listed, acks, got }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
