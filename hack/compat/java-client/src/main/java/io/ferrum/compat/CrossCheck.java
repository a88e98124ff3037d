package io.ferrum.compat;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * The Java client's part in the cross-client byte-identity matrix of hack/compat/go-client.sh.
 * Both commands write one JSON object per message in the shape {@code ferrumctl --json} prints
 * ({"properties":{...},"body":"..."}), so the Go program's {@code canon} command reduces them
 * to the same canonical lines (keys, tags, user properties, body bytes) as every other client.
 *
 * <pre>
 * CrossCheck produce NAMESRV TOPIC COUNT RUN OUT.jsonl
 * CrossCheck consume NAMESRV TOPIC GROUP COUNT TIMEOUT_SECS OUT.jsonl
 * </pre>
 */
public final class CrossCheck {
    private CrossCheck() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 6 && args[0].equals("produce")) {
            produce(args[1], args[2], Integer.parseInt(args[3]), args[4], args[5]);
        } else if (args.length == 7 && args[0].equals("consume")) {
            consume(args[1], args[2], args[3], Integer.parseInt(args[4]), Integer.parseInt(args[5]), args[6]);
        } else {
            System.err.println("usage: CrossCheck produce NAMESRV TOPIC COUNT RUN OUT.jsonl | "
                + "consume NAMESRV TOPIC GROUP COUNT TIMEOUT_SECS OUT.jsonl");
            System.exit(2);
        }
        // The client's own threads (timers, Netty) would otherwise keep the JVM alive.
        System.exit(0);
    }

    static void produce(String namesrv, String topic, int count, String run, String out) throws Exception {
        DefaultMQProducer producer = new DefaultMQProducer("ferrum-java-cross-producer");
        producer.setNamesrvAddr(namesrv);
        producer.setSendMsgTimeout(10_000);
        producer.setRetryTimesWhenSendFailed(2);
        producer.start();
        List<String> lines = new ArrayList<>();
        try {
            for (int i = 0; i < count; i++) {
                String body = "java-body-" + run + "-" + i + " ünïcødé ✓ " + "ferrum·".repeat((i * 37) % 64);
                String tags = i % 2 == 0 ? "TagA" : "TagB";
                List<String> keys = Arrays.asList("java-" + run + "-" + i, "java-shared-" + run);
                Message msg = new Message(topic, tags, body.getBytes(StandardCharsets.UTF_8));
                msg.setKeys(keys);
                msg.putUserProperty("ferrum.seq", Integer.toString(i));
                msg.putUserProperty("ferrum.origin", "rocketmq-client-java");
                msg.putUserProperty("ferrum.note", "héllo wörld = a:b;c");
                SendResult result = producer.send(msg);
                if (result.getSendStatus() != SendStatus.SEND_OK) {
                    throw new IllegalStateException("send " + i + ": " + result);
                }
                Map<String, String> properties = new TreeMap<>();
                properties.put("KEYS", String.join(" ", keys));
                properties.put("TAGS", tags);
                properties.put("ferrum.seq", Integer.toString(i));
                properties.put("ferrum.origin", "rocketmq-client-java");
                properties.put("ferrum.note", "héllo wörld = a:b;c");
                lines.add(jsonLine(properties, body));
            }
        } finally {
            producer.shutdown();
        }
        write(out, lines);
        System.out.println("produced " + count + " messages to " + topic + ", all SEND_OK");
    }

    static void consume(String namesrv, String topic, String group, int count, int timeoutSecs, String out)
        throws Exception {
        Map<String, String> received = new ConcurrentHashMap<>();
        List<String> errors = new ArrayList<>();
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
            for (MessageExt m : msgs) {
                // A redelivery carries the same message id; the line is the same too.
                String id = m.getMsgId();
                try {
                    received.putIfAbsent(id, jsonLine(new TreeMap<>(m.getProperties()), utf8(m.getBody())));
                } catch (CharacterCodingException e) {
                    synchronized (errors) {
                        errors.add("message " + id + ": body is not UTF-8");
                    }
                }
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSecs);
        try {
            while (received.size() < count && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            // Anything past the expected count would be a duplicate or a stranger: wait briefly.
            Thread.sleep(1000);
        } finally {
            consumer.shutdown();
        }
        List<String> lines = new ArrayList<>(received.values());
        write(out, lines);
        synchronized (errors) {
            if (!errors.isEmpty()) {
                System.err.println("java consumer: " + errors);
                System.exit(1);
            }
        }
        if (lines.size() != count) {
            System.err.println("java consumer: received " + lines.size() + " of " + count + " messages from " + topic);
            System.exit(1);
        }
        System.out.println("consumed " + count + " messages from " + topic);
    }

    static String utf8(byte[] body) throws CharacterCodingException {
        return StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT)
            .decode(ByteBuffer.wrap(body))
            .toString();
    }

    static void write(String path, List<String> lines) throws Exception {
        StringBuilder text = new StringBuilder();
        for (String line : lines) {
            text.append(line).append('\n');
        }
        Files.write(Paths.get(path), text.toString().getBytes(StandardCharsets.UTF_8));
    }

    static String jsonLine(Map<String, String> properties, String body) {
        StringBuilder sb = new StringBuilder("{\"properties\":{");
        boolean first = true;
        for (Map.Entry<String, String> e : properties.entrySet()) {
            if (!first) {
                sb.append(',');
            }
            first = false;
            quote(sb, e.getKey());
            sb.append(':');
            quote(sb, e.getValue());
        }
        sb.append("},\"body\":");
        quote(sb, body);
        return sb.append('}').toString();
    }

    static void quote(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        sb.append('"');
    }
}
