// Sarama (Debian's golang-github-shopify-sarama-dev) against the gateway, one step per run,
// driven by compat_tests/test_sarama.py. Every step prints one JSON line on stdout; bytes travel
// as base64 (encoding/json's []byte) so that the test compares them exactly.
//
//	sarama <bootstrap> <kafka version> produce <topic> <count>
//	sarama <bootstrap> <kafka version> consume <topic[,topic...]> <group> <count>
//	sarama <bootstrap> <kafka version> read <topic> <partition> <offset> <count>
//	sarama <bootstrap> <kafka version> offset-at <topic> <partition> <timestamp ms>
//	sarama <bootstrap> <kafka version> admin-create <topic> <partitions>
//	sarama <bootstrap> <kafka version> admin-inspect <topic> <group> <partitions>
//	sarama <bootstrap> <kafka version> admin-delete <topic>
//
// The Kafka version is the one Sarama is told the broker runs ("max" for the newest it knows):
// it picks every request's version from it, without asking the broker.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type record struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       []byte            `json:"key"`
	Value     []byte            `json:"value"`
	Headers   map[string][]byte `json:"headers"`
}

// message is record i as sent: the value holds every byte value, so that no text conversion
// on the way goes unnoticed. Before Kafka 0.11 records have no headers (Sarama refuses them).
func message(conf *sarama.Config, topic string, i int) *sarama.ProducerMessage {
	all := make([]byte, 256)
	for b := range all {
		all[b] = byte(b)
	}
	msg := &sarama.ProducerMessage{
		Topic: topic,
		Key:   sarama.ByteEncoder(fmt.Sprintf("key-%d", i)),
		Value: sarama.ByteEncoder(append([]byte(fmt.Sprintf("value-%d:", i)), all...)),
	}
	if conf.Version.IsAtLeast(sarama.V0_11_0_0) {
		msg.Headers = []sarama.RecordHeader{
			{Key: []byte("seq"), Value: []byte(strconv.Itoa(i))},
			{Key: []byte("bin"), Value: []byte{0, 255, byte(i % 256)}},
		}
	}
	return msg
}

func config(version string) *sarama.Config {
	conf := sarama.NewConfig()
	conf.ClientID = "flexlog-compat-sarama"
	conf.Version = sarama.MaxVersion
	if version != "max" {
		v, err := sarama.ParseKafkaVersion(version)
		check(err)
		conf.Version = v
	}
	conf.Metadata.Retry.Backoff = 100 * time.Millisecond
	return conf
}

func produce(conf *sarama.Config, bootstrap, topic string, count int) interface{} {
	conf.Producer.RequiredAcks = sarama.WaitForAll
	conf.Producer.Return.Successes = true
	conf.Producer.Retry.Max = 2
	producer, err := sarama.NewSyncProducer([]string{bootstrap}, conf)
	check(err)
	defer producer.Close()
	msgs := make([]*sarama.ProducerMessage, count)
	for i := range msgs {
		msgs[i] = message(conf, topic, i)
	}
	// A refused batch is an answer the test checks (the oldest versions), not a crash.
	if err := producer.SendMessages(msgs); err != nil {
		errs := err.(sarama.ProducerErrors)
		return map[string]interface{}{"sent": count - len(errs), "error": errs[0].Err.Error()}
	}
	partitions := map[int32]bool{}
	for _, m := range msgs {
		partitions[m.Partition] = true
	}
	return map[string]interface{}{"sent": count, "partitions": len(partitions)}
}

// handler records `want` records, marking each one's offset after recording it; the group
// commits marked offsets every CommitInterval and on Close. Records delivered after the count
// are neither recorded nor marked: the next run of the group must get them.
type handler struct {
	want   int
	mu     sync.Mutex
	got    []record
	cancel context.CancelFunc
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		h.mu.Lock()
		if len(h.got) < h.want {
			headers := map[string][]byte{}
			for _, hd := range msg.Headers {
				headers[string(hd.Key)] = hd.Value
			}
			h.got = append(h.got, record{msg.Topic, msg.Partition, msg.Offset, msg.Key, msg.Value, headers})
			sess.MarkMessage(msg, "")
			if len(h.got) == h.want {
				h.cancel()
			}
		}
		h.mu.Unlock()
	}
	return nil
}

func consume(conf *sarama.Config, bootstrap, topics, group string, count int) interface{} {
	conf.Consumer.Offsets.Initial = sarama.OffsetOldest
	conf.Consumer.Group.Session.Timeout = 10 * time.Second
	conf.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	conf.Consumer.Return.Errors = true
	cg, err := sarama.NewConsumerGroup([]string{bootstrap}, group, conf)
	check(err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := &handler{want: count, cancel: cancel}
	// Sarama retries a refused Fetch forever; the first error ends the run, for the test to see.
	var failure string
	go func() {
		for err := range cg.Errors() {
			h.mu.Lock()
			if failure == "" {
				failure = err.Error()
			}
			h.mu.Unlock()
			cancel()
		}
	}()
	// Consume returns at each rebalance; the loop rejoins until the count is reached.
	for ctx.Err() == nil {
		check(cg.Consume(ctx, strings.Split(topics, ","), h))
	}
	check(cg.Close())
	h.mu.Lock()
	defer h.mu.Unlock()
	return map[string]interface{}{"records": h.got, "error": failure}
}

// read is a partition consumer outside any group, started at offset (-2 the oldest, -1 the
// newest): up to count records, then the high watermark its last fetch answer carried. It waits
// 1 s for the next record (an idle fetch waits 250 ms at the broker, Sarama's MaxWaitTime), so a
// count above what is there shows what the partition holds.
func read(conf *sarama.Config, bootstrap, topic string, partition int, offset int64, count int) interface{} {
	conf.Consumer.Return.Errors = true
	consumer, err := sarama.NewConsumer([]string{bootstrap}, conf)
	check(err)
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, int32(partition), offset)
	if err != nil {
		// Refused start offsets (out of range) are answers the test checks.
		return map[string]interface{}{"error": err.Error()}
	}
	defer pc.Close()
	got := []record{}
	failure := ""
wait:
	for len(got) < count {
		select {
		case msg := <-pc.Messages():
			got = append(got, record{msg.Topic, msg.Partition, msg.Offset, msg.Key, msg.Value, nil})
		case err := <-pc.Errors():
			failure = err.Error()
			break wait
		case <-time.After(time.Second):
			break wait
		}
	}
	return map[string]interface{}{"records": got, "error": failure,
		"highWaterMark": pc.HighWaterMarkOffset()}
}

// offsetAt is ListOffsets by timestamp: the first offset whose record time is at least ms.
func offsetAt(conf *sarama.Config, bootstrap, topic string, partition int, ms int64) interface{} {
	client, err := sarama.NewClient([]string{bootstrap}, conf)
	check(err)
	defer client.Close()
	offset, err := client.GetOffset(topic, int32(partition), ms)
	check(err)
	return map[string]interface{}{"offset": offset}
}

func adminCreate(admin sarama.ClusterAdmin, topic string, partitions int) interface{} {
	detail := &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1}
	check(admin.CreateTopic(topic, detail, false))
	again := admin.CreateTopic(topic, detail, false)
	return map[string]interface{}{"again": again.Error()}
}

func adminInspect(admin sarama.ClusterAdmin, topic, group string, partitions int) interface{} {
	topics, err := admin.ListTopics()
	check(err)
	described, err := admin.DescribeTopics([]string{topic})
	check(err)
	var ids []int
	for _, p := range described[0].Partitions {
		ids = append(ids, int(p.ID))
	}
	sort.Ints(ids)
	groups, err := admin.ListConsumerGroups()
	check(err)
	descs, err := admin.DescribeConsumerGroups([]string{group})
	check(err)
	var parts []int32
	for p := 0; p < partitions; p++ {
		parts = append(parts, int32(p))
	}
	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	check(err)
	committed := map[string]int64{}
	for p, block := range offsets.Blocks[topic] {
		committed[strconv.Itoa(int(p))] = block.Offset
	}
	return map[string]interface{}{
		"listed":       topics[topic].NumPartitions,
		"partitions":   ids,
		"groupType":    groups[group],
		"state":        descs[0].State,
		"protocolType": descs[0].ProtocolType,
		"members":      len(descs[0].Members),
		"offsets":      committed,
	}
}

func adminDelete(admin sarama.ClusterAdmin, topic string) interface{} {
	check(admin.DeleteTopic(topic))
	topics, err := admin.ListTopics()
	check(err)
	_, listed := topics[topic]
	return map[string]interface{}{"listed": listed}
}

func main() {
	bootstrap, version, step, args := os.Args[1], os.Args[2], os.Args[3], os.Args[4:]
	conf := config(version)
	number := func(s string) int {
		n, err := strconv.Atoi(s)
		check(err)
		return n
	}
	var result interface{}
	switch step {
	case "produce":
		result = produce(conf, bootstrap, args[0], number(args[1]))
	case "consume":
		result = consume(conf, bootstrap, args[0], args[1], number(args[2]))
	case "read":
		offset, err := strconv.ParseInt(args[2], 10, 64)
		check(err)
		result = read(conf, bootstrap, args[0], number(args[1]), offset, number(args[3]))
	case "offset-at":
		ms, err := strconv.ParseInt(args[2], 10, 64)
		check(err)
		result = offsetAt(conf, bootstrap, args[0], number(args[1]), ms)
	default:
		admin, err := sarama.NewClusterAdmin([]string{bootstrap}, conf)
		check(err)
		defer admin.Close()
		switch step {
		case "admin-create":
			result = adminCreate(admin, args[0], number(args[1]))
		case "admin-inspect":
			result = adminInspect(admin, args[0], args[1], number(args[2]))
		case "admin-delete":
			result = adminDelete(admin, args[0])
		}
	}
	check(json.NewEncoder(os.Stdout).Encode(result))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
