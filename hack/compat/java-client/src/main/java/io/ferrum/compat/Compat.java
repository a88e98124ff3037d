package io.ferrum.compat;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/** Shared helpers of the scenarios: arguments, checks, bounded waiting. */
final class Compat {
    private Compat() {
    }

    /** Thrown by {@link #check}; the scenario's main prints it and exits with status 1. */
    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String message) {
            super(message);
        }
    }

    static void check(boolean condition, String what) {
        if (!condition) {
            throw new CheckFailed(what);
        }
        System.out.println("  ok: " + what);
    }

    static void checkQuiet(boolean condition, String what) {
        if (!condition) {
            throw new CheckFailed(what);
        }
    }

    /** Polls {@code condition} every 100 ms until it holds or {@code seconds} have passed. */
    static boolean await(int seconds, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (System.nanoTime() < deadline) {
            if (condition.getAsBoolean()) {
                return true;
            }
            Thread.sleep(100);
        }
        return condition.getAsBoolean();
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** args: NAMESRV TOPIC GROUP [extra...] */
    static String arg(String[] args, int index, String name) {
        if (args.length <= index) {
            System.err.println("missing argument " + (index + 1) + ": " + name);
            System.exit(2);
        }
        return args[index];
    }

    /** Runs a scenario body: a failed check or any exception exits non-zero with its cause. */
    static void run(String scenario, ScenarioBody body) {
        System.out.println("scenario " + scenario);
        int status = 0;
        try {
            body.run();
            System.out.println("PASS " + scenario);
        } catch (CheckFailed e) {
            System.err.println("FAIL " + scenario + ": " + e.getMessage());
            status = 1;
        } catch (Throwable e) {
            System.err.println("FAIL " + scenario + ": " + e);
            e.printStackTrace();
            status = 1;
        }
        // The clients' non-daemon threads must not keep a failed scenario alive.
        System.exit(status);
    }

    interface ScenarioBody {
        void run() throws Exception;
    }

    /** The user properties of a message, without the ones RocketMQ itself sets. */
    static boolean hasProperties(Map<String, String> actual, Map<String, String> expected) {
        for (Map.Entry<String, String> e : expected.entrySet()) {
            if (!e.getValue().equals(actual.get(e.getKey()))) {
                return false;
            }
        }
        return true;
    }
}
