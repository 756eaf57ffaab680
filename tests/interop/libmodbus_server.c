/*
 * A Modbus TCP server we did not write the protocol of (libmodbus), for tests/interop.
 *
 *   libmodbus_server [REGISTERS [rtu DEVICE [UNIT]]]
 *
 * Modbus TCP: listens on 127.0.0.1 on a port the OS picks and prints {"port": N, ...} on stdout
 * when it accepts connections. Serves any number of clients at once (one select loop).
 * Modbus RTU (rtu DEVICE): answers as unit UNIT (default 1) on the serial port DEVICE at 19200 8N1
 * and prints {"device": ..., "unit": N, ...} when listening; requests for other units get no
 * answer, as on a real bus. On SIGUSR1 it prints its
 * counters as one JSON line; on SIGTERM or SIGINT it prints them once more and exits 0:
 *   {"requests": N, "writes": W, "exceptions": E, "connections": C, "by_function": {"1": .., ...}}
 * "writes" counts every request with a write function code (5, 6, 15, 16, 22, 23); they are
 * refused with exception 1 so the map stays as described below.
 *
 * The map (tests/interop/libmodbus.py mirrors it; addresses are wire addresses, from 0):
 * - holding and input registers 0..REGISTERS-1 (default 1000) hold their own address (mod 65536),
 *   except where a typed value is written over them;
 * - holding: one block per byte order, ABCD at 0, DCBA at 30, BADC at 55, CDAB at 85, each:
 *   +0 int16 -12345, +1 uint16 54321, +2 int32 -123456789, +4 uint32 3000000000,
 *   +6 float32 1234.5678f, +8 int64 -1234567890123456789, +12 uint64 18000000000000000000,
 *   +16 float64 -12345.678901234567; the ABCD and BADC blocks add +20 the string "EXTRUDER-7/B"
 *   in 8 registers (NUL padded), and ABCD adds +28 a register with bits 0, 5 and 15 set;
 * - holding 208..212 are a hole: any read that touches them gets exception 2 (illegal data
 *   address), as from a PLC with an unmapped area; reads past REGISTERS get it from libmodbus;
 * - input registers: 0 float32 1234.5678f ABCD, 2 int32 -123456789 CDAB, 4 uint16 4321;
 * - coils 0..15: 1 0 1 1 0 0 0 1 1 1 1 1 0 0 0 1 (coil 0 first); discrete inputs 0..15: the same
 *   pattern inverted.
 *
 * Values are placed byte by byte from their big-endian form (A = most significant byte):
 * libmodbus's own modbus_set_float_* helpers changed meaning between releases (libmodbus issues
 * 358, 611, 665), so they are not used.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_REGISTERS 1000
#define BITS 16
#define HOLE_FIRST 208
#define HOLE_LAST 212

enum order { ABCD, DCBA, BADC, CDAB };

static volatile sig_atomic_t want_stats = 0;
static volatile sig_atomic_t want_stop = 0;

static unsigned long requests = 0, writes = 0, exceptions = 0, connections = 0;
static unsigned long by_function[128];

static void on_signal(int signum) {
    if (signum == SIGUSR1) {
        want_stats = 1;
    } else {
        want_stop = 1;
    }
}

static void print_stats(void) {
    printf("{\"requests\": %lu, \"writes\": %lu, \"exceptions\": %lu, \"connections\": %lu, \"by_function\": {",
           requests, writes, exceptions, connections);
    int first = 1;
    for (int fc = 0; fc < 128; fc++) {
        if (by_function[fc]) {
            printf("%s\"%d\": %lu", first ? "" : ", ", fc, by_function[fc]);
            first = 0;
        }
    }
    printf("}}\n");
    fflush(stdout);
}

/* Write `size` big-endian bytes into size/2 registers in `order`. */
static void put(uint16_t *regs, const uint8_t *big_endian, int size, enum order order) {
    int words = size / 2;
    for (int i = 0; i < words; i++) {
        int source = (order == CDAB || order == DCBA) ? words - 1 - i : i;
        uint8_t high = big_endian[2 * source], low = big_endian[2 * source + 1];
        regs[i] = (order == BADC || order == DCBA) ? (uint16_t)(low << 8 | high) : (uint16_t)(high << 8 | low);
    }
}

static void put_u64(uint16_t *regs, uint64_t value, int size, enum order order) {
    uint8_t bytes[8];
    for (int i = 0; i < size; i++) {
        bytes[i] = (uint8_t)(value >> (8 * (size - 1 - i)));
    }
    put(regs, bytes, size, order);
}

static void put_float(uint16_t *regs, float value, enum order order) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    put_u64(regs, bits, 4, order);
}

static void put_double(uint16_t *regs, double value, enum order order) {
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    put_u64(regs, bits, 8, order);
}

static void put_string(uint16_t *regs, const char *text, int registers, enum order order) {
    uint8_t bytes[2 * 125] = {0};
    memcpy(bytes, text, strlen(text));
    /* A string is characters in register order; only the swap inside a register applies. */
    put(regs, bytes, 2 * registers, order == BADC || order == DCBA ? BADC : ABCD);
}

static void fill_map(modbus_mapping_t *map, int registers) {
    for (int a = 0; a < registers; a++) {
        map->tab_registers[a] = (uint16_t)a;
        map->tab_input_registers[a] = (uint16_t)a;
    }
    const enum order orders[] = {ABCD, DCBA, BADC, CDAB};
    const int bases[] = {0, 30, 55, 85};
    for (int k = 0; k < 4; k++) {
        uint16_t *r = map->tab_registers + bases[k];
        put_u64(r + 0, (uint16_t)-12345, 2, orders[k]);
        put_u64(r + 1, 54321, 2, orders[k]);
        put_u64(r + 2, (uint32_t)-123456789, 4, orders[k]);
        put_u64(r + 4, 3000000000u, 4, orders[k]);
        put_float(r + 6, 1234.5678f, orders[k]);
        put_u64(r + 8, (uint64_t)-1234567890123456789LL, 8, orders[k]);
        put_u64(r + 12, 18000000000000000000ull, 8, orders[k]);
        put_double(r + 16, -12345.678901234567, orders[k]);
        if (orders[k] == ABCD || orders[k] == BADC) {
            put_string(r + 20, "EXTRUDER-7/B", 8, orders[k]);
        }
        if (orders[k] == ABCD) {
            r[28] = (1u << 0) | (1u << 5) | (1u << 15);
        }
    }
    put_float(map->tab_input_registers + 0, 1234.5678f, ABCD);
    put_u64(map->tab_input_registers + 2, (uint32_t)-123456789, 4, CDAB);
    map->tab_input_registers[4] = 4321;
    const uint8_t pattern[BITS] = {1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1};
    for (int i = 0; i < BITS; i++) {
        map->tab_bits[i] = pattern[i];
        map->tab_input_bits[i] = !pattern[i];
    }
}

static int is_write(int function) {
    return function == 5 || function == 6 || function == 15 || function == 16 || function == 22 || function == 23;
}

/* Answer one request from `fd` (TCP: set as the context's socket; RTU: the line, already set).
 * -1 when a TCP client is gone; on a serial line a bad frame is skipped. */
static int serve(modbus_t *ctx, int fd, int tcp, modbus_mapping_t *map) {
    uint8_t query[MODBUS_MAX_ADU_LENGTH];
    if (tcp) {
        modbus_set_socket(ctx, fd);
    }
    int length = modbus_receive(ctx, query);
    if (length == 0) {
        return 0; /* for another unit id on the serial line: a real device stays silent */
    }
    if (length < 0) {
        if (!tcp) {
            modbus_flush(ctx);
        }
        return tcp ? -1 : 0;
    }
    int offset = modbus_get_header_length(ctx);
    int function = query[offset];
    int address = query[offset + 1] << 8 | query[offset + 2];
    int count = query[offset + 3] << 8 | query[offset + 4];
    requests++;
    by_function[function & 0x7f]++;
    int answered;
    if (is_write(function)) {
        writes++;
        exceptions++;
        answered = modbus_reply_exception(ctx, query, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
    } else if (function == 3 && address <= HOLE_LAST && address + count - 1 >= HOLE_FIRST) {
        exceptions++;
        answered = modbus_reply_exception(ctx, query, MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS);
    } else {
        answered = modbus_reply(ctx, query, length, map);
        /* An exception response is the header, function and exception code (and CRC on RTU). */
        if (answered == offset + 2 + (tcp ? 0 : 2)) {
            exceptions++;
        }
    }
    return answered < 0 && tcp ? -1 : 0;
}

static int listen_on_free_port(int *port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
        perror("socket");
        return -1;
    }
    int yes = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (bind(s, (struct sockaddr *)&address, size) < 0 || listen(s, 64) < 0 ||
        getsockname(s, (struct sockaddr *)&address, &size) < 0) {
        perror("bind/listen on 127.0.0.1:0");
        close(s);
        return -1;
    }
    *port = ntohs(address.sin_port);
    return s;
}

/* Wait for input on the descriptors in `watched`; signals are delivered only inside pselect, so
 * none is lost between checking a flag and waiting. -1 when the loop should end. */
static int wait_for_input(int highest, fd_set *watched, fd_set *readable, const sigset_t *during_wait) {
    *readable = *watched;
    int ready = pselect(highest + 1, readable, NULL, NULL, NULL, during_wait);
    if (want_stats) {
        want_stats = 0;
        print_stats();
    }
    if (ready < 0) {
        if (errno == EINTR) {
            FD_ZERO(readable);
            return 0;
        }
        perror("select");
        return -1;
    }
    return ready;
}

static int run_tcp(modbus_mapping_t *map, int registers, const sigset_t *during_wait) {
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", 0); /* only framing: the sockets are ours */
    int port = 0;
    int server = ctx == NULL ? -1 : listen_on_free_port(&port);
    if (server < 0) {
        return 1;
    }
    /* A client that sends half a frame must not stall the others for long. */
    modbus_set_indication_timeout(ctx, 2, 0);
    printf("{\"port\": %d, \"registers\": %d}\n", port, registers);
    fflush(stdout);

    fd_set watched, readable;
    FD_ZERO(&watched);
    FD_SET(server, &watched);
    int highest = server;
    while (!want_stop && wait_for_input(highest, &watched, &readable, during_wait) >= 0) {
        for (int fd = 0; fd <= highest; fd++) {
            if (!FD_ISSET(fd, &readable)) {
                continue;
            }
            if (fd == server) {
                int client = accept(server, NULL, NULL);
                if (client < 0 || client >= FD_SETSIZE) {
                    if (client >= 0) {
                        close(client);
                    }
                    continue;
                }
                int yes = 1;
                setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
                FD_SET(client, &watched);
                highest = client > highest ? client : highest;
                connections++;
            } else if (serve(ctx, fd, 1, map) < 0) {
                close(fd);
                FD_CLR(fd, &watched);
            }
        }
    }
    close(server);
    modbus_free(ctx);
    return 0;
}

static int run_rtu(modbus_mapping_t *map, int registers, const char *device, int unit, const sigset_t *during_wait) {
    modbus_t *ctx = modbus_new_rtu(device, 19200, 'N', 8, 1);
    if (ctx == NULL || modbus_set_slave(ctx, unit) < 0 || modbus_connect(ctx) < 0) {
        fprintf(stderr, "libmodbus RTU on %s: %s\n", device, modbus_strerror(errno));
        return 1;
    }
    int fd = modbus_get_socket(ctx);
    connections = 1;
    printf("{\"device\": \"%s\", \"unit\": %d, \"registers\": %d}\n", device, unit, registers);
    fflush(stdout);
    fd_set watched, readable;
    FD_ZERO(&watched);
    FD_SET(fd, &watched);
    while (!want_stop && wait_for_input(fd, &watched, &readable, during_wait) >= 0) {
        if (FD_ISSET(fd, &readable)) {
            serve(ctx, fd, 0, map);
        }
    }
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    int registers = argc > 1 ? atoi(argv[1]) : DEFAULT_REGISTERS;
    int rtu = argc > 2 && strcmp(argv[2], "rtu") == 0 && argc > 3;
    if (registers < 120 || registers > 65536 || (argc > 2 && !rtu)) {
        fprintf(stderr, "usage: %s [REGISTERS (120-65536, default %d) [rtu DEVICE [UNIT]]]\n", argv[0],
                DEFAULT_REGISTERS);
        return 2;
    }
    modbus_mapping_t *map = modbus_mapping_new(BITS, BITS, registers, registers);
    if (map == NULL) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    fill_map(map, registers);

    sigset_t blocked, during_wait;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigprocmask(SIG_BLOCK, &blocked, &during_wait);
    struct sigaction action = {.sa_handler = on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = rtu ? run_rtu(map, registers, argv[3], argc > 4 ? atoi(argv[4]) : 1, &during_wait)
                     : run_tcp(map, registers, &during_wait);
    print_stats();
    modbus_mapping_free(map);
    return status;
}
