import java.nio.charset.StandardCharsets;

import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;

/**
 * Apache's DefaultMQProducer with default settings sends one message every 20 ms and prints each
 * change between failing and succeeding with a wall-clock timestamp in milliseconds, so a script
 * can measure how long sends fail around a kill and a promotion.
 *
 * args: NAMESRV TOPIC SECONDS
 */
public final class Failover {
    private Failover() {
    }

    public static void main(String[] args) throws Exception {
        String namesrv = args[0];
        String topic = args[1];
        long until = System.currentTimeMillis() + Long.parseLong(args[2]) * 1000L;
        DefaultMQProducer producer = new DefaultMQProducer("FerrumFailoverProducer");
        producer.setNamesrvAddr(namesrv);
        producer.start();
        Boolean lastOk = null;
        long sent = 0;
        while (System.currentTimeMillis() < until) {
            boolean ok;
            String why = "";
            try {
                Message message = new Message(topic, ("failover-" + sent).getBytes(StandardCharsets.UTF_8));
                SendResult result = producer.send(message);
                ok = result.getSendStatus() == SendStatus.SEND_OK;
                why = String.valueOf(result.getSendStatus());
            } catch (Exception e) {
                ok = false;
                why = e.getClass().getSimpleName();
            }
            sent++;
            if (lastOk == null || lastOk != ok) {
                System.out.println((ok ? "ok " : "fail ") + System.currentTimeMillis() + " " + why);
                System.out.flush();
                lastOk = ok;
            }
            Thread.sleep(20);
        }
        producer.shutdown();
        System.out.println("done " + System.currentTimeMillis() + " sent=" + sent);
    }
}
