// Command go-client drives Apache rocketmq-client-go v2, unchanged, against a RocketMQ
// NameServer + broker (ferrum-broker in hack/compat/go-client.sh).
//
// Every message is reduced to one canonical line (keys, tags, user properties, body in hex),
// so what one client sent and what another received can be compared with diff:
//
//	go-client produce -n ADDR -t TOPIC -count N -out sent.txt
//	go-client consume -n ADDR -t TOPIC -g GROUP -count N -expect sent.txt -out got.txt
//	go-client canon -in ferrumctl.jsonl -out got.txt   (ferrumctl --json message lines)
//	go-client expect -tags T -keys K -body B -count N -out expected.txt
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// Properties the client or the broker add on their own: they differ between senders, so only
// the application's properties (plus KEYS and TAGS, compared separately) are part of the line.
var systemProperties = map[string]bool{
	"KEYS": true, "TAGS": true, "UNIQ_KEY": true, "WAIT": true, "MIN_OFFSET": true,
	"MAX_OFFSET": true, "CONSUME_START_TIME": true, "CLUSTER": true, "MSG_REGION": true,
	"TRACE_ON": true, "REAL_TOPIC": true, "REAL_QID": true, "RETRY_TOPIC": true,
	"DELAY": true, "ORIGIN_MESSAGE_ID": true, "RECONSUME_TIME": true,
	"MAX_RECONSUME_TIMES": true, "PGROUP": true, "TRAN_MSG": true, "SHARDING_KEY": true,
	"INNER_MULTI_DISPATCH": true, "INNER_MULTI_QUEUE_OFFSET": true,
}

func canonical(keys, tags string, props map[string]string, body []byte) string {
	var user []string
	for k, v := range props {
		if !systemProperties[k] {
			user = append(user, strconv.Quote(k)+"="+strconv.Quote(v))
		}
	}
	sort.Strings(user)
	return fmt.Sprintf("keys=%q tags=%q props={%s} body=%s",
		keys, tags, strings.Join(user, ","), hex.EncodeToString(body))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-client: "+format+"\n", args...)
	os.Exit(1)
}

func writeLines(path string, lines []string) {
	sorted := append([]string(nil), lines...)
	sort.Strings(sorted)
	data := strings.Join(sorted, "\n")
	if len(sorted) > 0 {
		data += "\n"
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		fail("write %s: %v", path, err)
	}
}

func readLines(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("read %s: %v", path, err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// goMessage is message i of a producer run: two keys, alternating tags, user properties with
// non-ASCII values, and a body whose length varies so records do not all share one size.
func goMessage(topic, run string, i int) *primitive.Message {
	filler := strings.Repeat("ferrum·", (i*37)%64)
	body := []byte(fmt.Sprintf("go-body-%s-%d ünïcødé ✓ %s", run, i, filler))
	msg := primitive.NewMessage(topic, body)
	msg.WithKeys([]string{fmt.Sprintf("go-%s-%d", run, i), "go-shared-" + run})
	if i%2 == 0 {
		msg.WithTag("TagA")
	} else {
		msg.WithTag("TagB")
	}
	msg.WithProperty("ferrum.seq", strconv.Itoa(i))
	msg.WithProperty("ferrum.origin", "rocketmq-client-go")
	msg.WithProperty("ferrum.note", "héllo wörld = a:b;c")
	return msg
}

func produce(args []string) {
	fs := flag.NewFlagSet("produce", flag.ExitOnError)
	ns := fs.String("n", "127.0.0.1:9876", "NameServer address")
	topic := fs.String("t", "", "topic")
	group := fs.String("g", "ferrum-go-producer", "producer group")
	count := fs.Int("count", 100, "messages to send")
	run := fs.String("run", "r", "run id put into keys and bodies")
	out := fs.String("out", "", "file for the canonical lines of what was sent")
	batch := fs.Int("batch", 1, "messages per SendSync call; above 1 the client sends SEND_BATCH_MESSAGE")
	_ = fs.Parse(args)
	if *topic == "" || *out == "" || *batch < 1 {
		fail("produce needs -t, -out and a positive -batch")
	}
	p, err := rocketmq.NewProducer(
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{*ns})),
		producer.WithGroupName(*group),
		producer.WithRetry(2),
		producer.WithSendMsgTimeout(5*time.Second),
	)
	if err != nil {
		fail("new producer: %v", err)
	}
	if err := p.Start(); err != nil {
		fail("start producer: %v", err)
	}
	var lines []string
	for i := 0; i < *count; i += *batch {
		var msgs []*primitive.Message
		for j := i; j < i+*batch && j < *count; j++ {
			msgs = append(msgs, goMessage(*topic, *run, j))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := p.SendSync(ctx, msgs...)
		cancel()
		if err != nil {
			fail("send %d: %v", i, err)
		}
		if res.Status != primitive.SendOK {
			fail("send %d: status %d, want SendOK (%s)", i, res.Status, res.String())
		}
		// The Go client gives UNIQ_KEYs (SendResult.MsgID) to single messages only, never to
		// the messages of a batch; the broker's offsetMsgId must be there in both cases.
		if (len(msgs) == 1 && res.MsgID == "") || res.OffsetMsgID == "" {
			fail("send %d: result lacks msgId/offsetMsgId: %s", i, res.String())
		}
		if n := len(strings.Split(res.OffsetMsgID, ",")); n != len(msgs) {
			fail("send %d: %d offsetMsgIds for %d messages: %s", i, n, len(msgs), res.String())
		}
		for _, msg := range msgs {
			lines = append(lines, canonical(msg.GetKeys(), msg.GetTags(), msg.GetProperties(), msg.Body))
		}
	}
	_ = p.Shutdown()
	writeLines(*out, lines)
	fmt.Printf("produced %d messages to %s, all SendOK\n", *count, *topic)
}

func consume(args []string) {
	fs := flag.NewFlagSet("consume", flag.ExitOnError)
	ns := fs.String("n", "127.0.0.1:9876", "NameServer address")
	topic := fs.String("t", "", "topic")
	group := fs.String("g", "ferrum-go-consumer", "consumer group")
	count := fs.Int("count", 100, "distinct messages to wait for")
	expect := fs.String("expect", "", "file of canonical lines that must be received exactly")
	out := fs.String("out", "", "file for the canonical lines received")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	tags := fs.String("tags", "*", "subscription expression (TagA || TagB, or *)")
	settle := fs.Duration("settle", 0, "after the last expected message, keep listening this long for extra ones")
	orderly := fs.Bool("orderly", false, "consume orderly (the client locks its queues with LOCK_BATCH_MQ)")
	retryFirst := fs.Bool("retry-first", false, "fail each message's first delivery (ConsumeRetryLater, delay level 1) and count only its redelivery")
	_ = fs.Parse(args)
	if *topic == "" || *out == "" {
		fail("consume needs -t and -out")
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var lines []string
	badTopic := ""
	extra := 0
	done := make(chan struct{})
	c, err := rocketmq.NewPushConsumer(
		consumer.WithNsResolver(primitive.NewPassthroughResolver([]string{*ns})),
		consumer.WithGroupName(*group),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithConsumerOrder(*orderly),
	)
	if err != nil {
		fail("new push consumer: %v", err)
	}
	err = c.Subscribe(*topic, consumer.MessageSelector{Type: consumer.TAG, Expression: *tags},
		func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			mu.Lock()
			defer mu.Unlock()
			if *retryFirst {
				retry := false
				for _, m := range msgs {
					if m.ReconsumeTimes == 0 {
						retry = true
					}
				}
				if retry {
					if cc, ok := primitive.GetConcurrentlyCtx(ctx); ok {
						cc.DelayLevelWhenNextConsume = 1
					}
					return consumer.ConsumeRetryLater, nil
				}
			}
			for _, m := range msgs {
				if m.Topic != *topic && badTopic == "" {
					badTopic = m.Topic
				}
				// Redelivery is allowed (at least once); the msgId tells copies apart from
				// two sends of identical content.
				id := m.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)
				if id == "" {
					id = m.MsgId
				}
				if seen[id] {
					continue
				}
				seen[id] = true
				lines = append(lines, canonical(m.GetKeys(), m.GetTags(), m.GetProperties(), m.Body))
				if len(lines) == *count {
					close(done)
				}
				if len(lines) > *count {
					extra++
				}
			}
			return consumer.ConsumeSuccess, nil
		})
	if err != nil {
		fail("subscribe: %v", err)
	}
	if err := c.Start(); err != nil {
		fail("start push consumer: %v", err)
	}
	timedOut := false
	select {
	case <-done:
	case <-time.After(*timeout):
		timedOut = true
	}
	if !timedOut && *settle > 0 {
		time.Sleep(*settle)
	}
	mu.Lock()
	got := append([]string(nil), lines...)
	extraSeen := extra
	wrongTopic := badTopic
	mu.Unlock()
	writeLines(*out, got)
	// The client removes a message from its process queue (and so advances the offset it
	// commits at shutdown) only after the listener returns; give in-flight callbacks time to
	// finish, or the next run of this group would legitimately see them again.
	time.Sleep(time.Second)
	shutdown := make(chan struct{})
	go func() { _ = c.Shutdown(); close(shutdown) }()
	select {
	case <-shutdown:
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "go-client: consumer shutdown took over 10 s; exiting anyway")
	}
	if wrongTopic != "" {
		fail("received a message of topic %q on %q", wrongTopic, *topic)
	}
	if timedOut {
		fail("received %d of %d messages within %v", len(got), *count, *timeout)
	}
	if extraSeen > 0 {
		fail("received %d messages more than the %d expected", extraSeen, *count)
	}
	if *expect != "" {
		compare(readLines(*expect), got)
	}
	fmt.Printf("consumed %d messages from %s\n", len(got), *topic)
}

// compare exits non-zero unless want and got hold the same lines the same number of times.
func compare(want, got []string) {
	counts := map[string]int{}
	for _, l := range want {
		counts[l]++
	}
	for _, l := range got {
		counts[l]--
	}
	bad := 0
	for l, n := range counts {
		if n == 0 {
			continue
		}
		bad++
		if bad <= 5 {
			if n > 0 {
				fmt.Fprintf(os.Stderr, "missing: %s\n", l)
			} else {
				fmt.Fprintf(os.Stderr, "unexpected: %s\n", l)
			}
		}
	}
	if bad > 0 {
		fail("%d lines differ between what was sent (%d) and received (%d)", bad, len(want), len(got))
	}
}

// canon turns `ferrumctl --json` message lines into canonical lines. ferrumctl prints the body
// as UTF-8 text, so only bodies that are valid UTF-8 survive this path byte for byte.
func canon(args []string) {
	fs := flag.NewFlagSet("canon", flag.ExitOnError)
	in := fs.String("in", "", "file of ferrumctl JSON lines (or arrays of messages)")
	out := fs.String("out", "", "file for the canonical lines")
	expect := fs.String("expect", "", "file of canonical lines that must match exactly")
	_ = fs.Parse(args)
	f, err := os.Open(*in)
	if err != nil {
		fail("open %s: %v", *in, err)
	}
	defer f.Close()
	type message struct {
		Properties map[string]string `json:"properties"`
		Body       string            `json:"body"`
	}
	var lines []string
	add := func(m message) {
		lines = append(lines, canonical(m.Properties["KEYS"], m.Properties["TAGS"], m.Properties, []byte(m.Body)))
	}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for scanner.Scan() {
		text := strings.TrimSpace(scanner.Text())
		if text == "" {
			continue
		}
		if strings.HasPrefix(text, "[") {
			var ms []message
			if err := json.Unmarshal([]byte(text), &ms); err != nil {
				fail("parse %s: %v", *in, err)
			}
			for _, m := range ms {
				add(m)
			}
			continue
		}
		var m message
		if err := json.Unmarshal([]byte(text), &m); err != nil {
			fail("parse %s: %v", *in, err)
		}
		add(m)
	}
	if err := scanner.Err(); err != nil {
		fail("read %s: %v", *in, err)
	}
	writeLines(*out, lines)
	if *expect != "" {
		compare(readLines(*expect), lines)
	}
	fmt.Printf("%d messages read from %s\n", len(lines), *in)
}

// expect writes the canonical lines of `ferrumctl message send --count N` with these options.
func expectLines(args []string) {
	fs := flag.NewFlagSet("expect", flag.ExitOnError)
	tags := fs.String("tags", "", "tags given to ferrumctl")
	keys := fs.String("keys", "", "keys given to ferrumctl, comma-separated")
	body := fs.String("body", "", "body given to ferrumctl")
	count := fs.Int("count", 1, "copies sent")
	out := fs.String("out", "", "file for the canonical lines")
	_ = fs.Parse(args)
	// RocketMQ joins several keys with a space in the KEYS property.
	joined := strings.Join(strings.Split(*keys, ","), " ")
	lines := make([]string, 0, *count)
	for i := 0; i < *count; i++ {
		lines = append(lines, canonical(joined, *tags, nil, []byte(*body)))
	}
	writeLines(*out, lines)
}

func main() {
	rlog.SetLogLevel("error")
	if len(os.Args) < 2 {
		fail("usage: go-client produce|consume|canon|expect [flags]")
	}
	switch os.Args[1] {
	case "produce":
		produce(os.Args[2:])
	case "consume":
		consume(os.Args[2:])
	case "canon":
		canon(os.Args[2:])
	case "expect":
		expectLines(os.Args[2:])
	default:
		fail("unknown command %q", os.Args[1])
	}
}
