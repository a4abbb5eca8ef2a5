/*
 * Provisioning-record and MCUboot-image verification for nRF applications,
 * and the device's signature for challenge-response authentication.
 *
 * Link with libfirmware.a, built by
 *   cargo build --release -p firmware --features capi [--target thumbv7em-none-eabihf]
 * Formats: docs/provisioning-record.md and docs/image-format.md.
 * No function allocates; every pointer is checked; keys are 65-byte SEC1
 * uncompressed P-256 points (0x04 || x || y), passed back to back.
 */
#ifndef PROVISIONING_H
#define PROVISIONING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROV_RECORD_LEN 208
#define PROV_MAX_KEYS 8

/* Results. */
#define PROV_OK                  0
#define PROV_ERASED              1  /* partition erased or blank: not provisioned */
#define PROV_MALFORMED           2
#define PROV_UNKNOWN_AUTHORITY   3
#define PROV_BAD_SIGNATURE       4
#define PROV_WRONG_CHIP          5
#define PROV_IMAGE_MALFORMED     10
#define PROV_IMAGE_BAD_HASH      11
#define PROV_IMAGE_KEY_MISMATCH  12
#define PROV_IMAGE_ROLLBACK      14
#define PROV_INVALID_ARGUMENT    (-1)

struct prov_record_info {
    uint32_t serial;
    uint32_t authority_index;     /* which of the authority keys signed */
    uint64_t issued_at;           /* Unix seconds */
    uint8_t  device_pubkey[65];
    char     product[17];         /* NUL-terminated */
};

struct prov_image_info {
    uint8_t  digest[32];
    uint32_t security_counter;    /* valid if has_security_counter */
    uint32_t version_build;
    uint16_t version_revision;
    uint8_t  version_major;
    uint8_t  version_minor;
    uint8_t  has_security_counter;
    uint8_t  key_index;           /* which of the release keys signed */
};

/* 0 only if sig (r || s) is a valid ECDSA P-256 signature over digest by pubkey. */
int prov_p256_verify_digest(const uint8_t pubkey[65], const uint8_t digest[32], const uint8_t sig[64]);

/* Verify the record at the start of a provisioning partition for the chip
 * hw_id (8 bytes: DEVICEID[1] then DEVICEID[0], big-endian), signed by one of
 * n_authorities keys. Fills *out (may be NULL) on PROV_OK. */
int prov_record_verify(const uint8_t *record, size_t record_len, const uint8_t hw_id[8],
                       const uint8_t *authority_keys, size_t n_authorities,
                       struct prov_record_info *out);

/* The device's answer to an authentication challenge (docs/device-auth.md):
 * ECDSA P-256 sig = r || s over SHA-256("nrf-fleet/device-auth/v1\0" || nonce
 * || hw_id || serial as u32 little-endian), with the device's private scalar
 * (32 bytes, big-endian). Deterministic (RFC 6979): no random source needed.
 * Returns PROV_OK, or PROV_INVALID_ARGUMENT (null pointer, or a scalar that
 * is not a valid P-256 private key), leaving sig untouched. */
int prov_auth_sign(const uint8_t scalar[32], const uint8_t nonce[32], const uint8_t hw_id[8],
                   uint32_t serial, uint8_t sig[64]);

/* Verify an MCUboot image signed by one of n_keys release keys, with a
 * security counter of at least min_security_counter (0: none required). */
int prov_image_verify(const uint8_t *image, size_t image_len,
                      const uint8_t *release_keys, size_t n_keys,
                      uint32_t min_security_counter, struct prov_image_info *out);

#ifdef __cplusplus
}
#endif

#endif /* PROVISIONING_H */
