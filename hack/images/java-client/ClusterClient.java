package io.ferrum.e2e;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

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
 * Apache RocketMQ's Java remoting client, unchanged and with default settings, inside the
 * cluster end-to-end scenario (hack/e2e/cluster.sh). Every message of a run carries the run's
 * tag, so a run reads back only its own messages from a topic others write to.
 *
 * <pre>
 * produce-consume NAMESRV TOPIC COUNT   COUNT sync sends, then a push consumer (new group,
 *                                       from the first offset) must receive every acknowledged
 *                                       one; prints "summary acked=A consumed=C lost=L"
 * failover NAMESRV TOPIC SECONDS [STOP]  one sync send every 20 ms for SECONDS, or until the
 *                                       file STOP exists; prints every send as
 *                                       "send START_MS END_MS SEND_OK|WHY" (wall clock, so a
 *                                       script can line sends up with the kills it made), then
 *                                       reads back every acknowledged message like
 *                                       produce-consume
 * </pre>
 * Exit status 0 only when nothing acknowledged is missing.
 */
public final class ClusterClient {
    private static final long READ_BACK_MS = 180_000;

    private ClusterClient() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4 && args.length != 5) {
            System.err.println("usage: produce-consume|failover NAMESRV TOPIC COUNT|SECONDS [STOP]");
            System.exit(2);
        }
        String namesrv = args[1];
        String topic = args[2];
        long n = Long.parseLong(args[3]);
        String tag = "java" + System.currentTimeMillis();
        DefaultMQProducer producer = new DefaultMQProducer("FerrumE2EJavaProducer");
        producer.setNamesrvAddr(namesrv);
        producer.start();
        Set<String> acked = ConcurrentHashMap.newKeySet();
        switch (args[0]) {
            case "produce-consume" -> produce(producer, topic, tag, n, acked);
            case "failover" -> failover(producer, topic, tag, n * 1000,
                    args.length == 5 ? Path.of(args[4]) : null, acked);
            default -> {
                System.err.println("unknown mode " + args[0]);
                System.exit(2);
            }
        }
        producer.shutdown();
        long lost = readBack(namesrv, topic, tag, acked);
        System.exit(lost == 0 && !acked.isEmpty() ? 0 : 1);
    }

    private static Message message(String topic, String tag, long i) {
        String key = tag + "-" + i;
        return new Message(topic, tag, key, ("body of " + key).getBytes(StandardCharsets.UTF_8));
    }

    private static void produce(DefaultMQProducer producer, String topic, String tag, long count,
            Set<String> acked) {
        long failed = 0;
        for (long i = 0; i < count; i++) {
            Message msg = message(topic, tag, i);
            try {
                SendResult result = producer.send(msg);
                if (result.getSendStatus() == SendStatus.SEND_OK) {
                    acked.add(msg.getKeys());
                } else {
                    failed++;
                }
            } catch (Exception e) {
                failed++;
                if (failed <= 5) {
                    System.out.println("send failed: " + e);
                }
            }
        }
        System.out.println("produced sent=" + count + " acked=" + acked.size() + " failed=" + failed);
    }

    private static void failover(DefaultMQProducer producer, String topic, String tag, long forMs,
            Path stop, Set<String> acked) throws InterruptedException {
        long until = System.currentTimeMillis() + forMs;
        long i = 0;
        long failed = 0;
        while (System.currentTimeMillis() < until && (stop == null || !Files.exists(stop))) {
            Message msg = message(topic, tag, i++);
            long start = System.currentTimeMillis();
            boolean ok;
            String why;
            try {
                SendResult result = producer.send(msg);
                ok = result.getSendStatus() == SendStatus.SEND_OK;
                why = String.valueOf(result.getSendStatus());
            } catch (Exception e) {
                ok = false;
                why = e.getClass().getSimpleName();
            }
            if (ok) {
                acked.add(msg.getKeys());
            } else {
                failed++;
            }
            System.out.println("send " + start + " " + System.currentTimeMillis() + " " + why);
            Thread.sleep(20);
        }
        System.out.println("produced sent=" + i + " acked=" + acked.size() + " failed=" + failed);
    }

    /** Reads the run's messages with a new push consumer; returns how many acknowledged are missing. */
    private static long readBack(String namesrv, String topic, String tag, Set<String> acked)
            throws Exception {
        Set<String> got = ConcurrentHashMap.newKeySet();
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer("FerrumE2EJava-" + tag);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                if (tag.equals(m.getTags())) {
                    got.add(m.getKeys());
                }
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        long deadline = System.currentTimeMillis() + READ_BACK_MS;
        while (!got.containsAll(acked) && System.currentTimeMillis() < deadline) {
            Thread.sleep(200);
        }
        consumer.shutdown();
        long lost = acked.stream().filter(k -> !got.contains(k)).count();
        System.out.println("summary acked=" + acked.size() + " consumed=" + got.size() + " lost=" + lost);
        return lost;
    }
}
