//! Key material generated and wrapped inside an HSM, through PKCS#11.
//!
//! Material for KMS is a *persistent token object* (custody, see [`Pkcs11Source::keep_new_material`]):
//! sensitive (its value cannot be read), extractable only so that it can leave the token
//! wrapped, labelled with the key ARN and named with an id of its own when it is created, so
//! that it can be found and imported again (KMS links its material id to that name). For each wrap the token imports the KMS public key as a session object and
//! wraps with `C_WrapKey`; the plaintext never leaves the token and the session objects are
//! destroyed before returning. ([`KeyMaterialSource::generate_and_wrap`] still makes throwaway
//! session material, for the probe and the tests that play KMS.)
//!
//! `RSA_AES_KEY_WRAP_*` is composed from two wraps inside the token (RSA-OAEP of an ephemeral
//! AES key, then RFC 5649 key wrap of the material under it) because few tokens, SoftHSM
//! included, implement `CKM_RSA_AES_KEY_WRAP` and cryptoki 0.12 has no binding for it.
//!
//! What a token can do is probed by doing it once with throwaway keys: tokens advertise
//! mechanisms whose parameters they then reject (SoftHSM 2.6 lists `CKM_RSA_PKCS_OAEP` but only
//! accepts SHA-1), so the mechanism list alone would promise algorithms that then fail.
//!
//! The parts: `token` (module, slot by label, login), `objects` (the key templates and the
//! session objects of one operation), `wrap` (wrapping inside the token, and the probe of
//! what it can do), `custody` (the source as the rotation sees it: kept material).

mod custody;
mod objects;
mod token;
mod wrap;

use std::ops::Deref;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;

// The tests check the material templates on a real token.
#[cfg(test)]
pub(super) use custody::refused_to_this_user;
#[cfg(test)]
pub(super) use objects::{ensure_sensitive, generate_material};
use token::{context, find_token, login, pkcs11};

use super::{CheckedWrap, HsmError, HsmPin, WrappingAlgorithm, WrappingKeySpec};

/// A PKCS#11 token that generates and wraps key material. The production source.
///
/// Holds one logged-in read-write session (kept material is a token object); calls are
/// serialised on it. A warm Lambda keeps the source for the life of its process, and an HSM
/// failover, an idle timeout or a network drop closes the session or logs it out behind its
/// back. So before each use the session is checked (C_GetSessionInfo: open, read-write, user
/// logged in) and, if it is not, a new one is opened and logged in with the PIN the source
/// keeps (zeroized on drop). An operation that fails because the session went away meanwhile
/// is run once more on a new session; every operation here finds before it creates, so a
/// second run never makes a second object.
pub struct Pkcs11Source {
    name: String,
    label: String,
    ctx: Pkcs11,
    slot: Mutex<Slot>,
    pin: HsmPin,
    /// `None` once the session is known to be gone.
    session: Mutex<Option<Session>>,
    /// Whether the token takes CKA_MODIFIABLE=false on kept objects (learnt at the first one).
    /// Where it does (SoftHSM), nothing can relabel kept material afterwards, and the tests
    /// run on a token that refuses every attribute change, as AWS CloudHSM refuses CKA_ID.
    /// CloudHSM itself takes CKA_MODIFIABLE only at its default ("Supported key attributes",
    /// note 1), so there the attribute is left out.
    immutable_kept_objects: OnceLock<bool>,
    supported: OnceLock<Vec<WrappingAlgorithm>>,
    wrap_with_trusted: OnceLock<WrapWithTrusted>,
}

/// The source's session, checked (and renewed) before it is handed out.
struct LiveSession<'a>(MutexGuard<'a, Option<Session>>);

impl Deref for LiveSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.0.as_ref().expect("a live session is checked before it is handed out")
    }
}

/// Whether kept material is marked `CKA_WRAP_WITH_TRUSTED`, so that only keys the token holds
/// as trusted can wrap it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapWithTrusted {
    /// The token lets this user mark the KMS wrapping key `CKA_TRUSTED`: kept material can be
    /// wrapped only to such keys.
    Used,
    /// The token refuses `CKA_TRUSTED` to a user session (SoftHSM 2.6 allows it to the
    /// security officer only), so a material marked wrap-with-trusted could never reach KMS.
    Unsupported,
}

impl std::fmt::Debug for Pkcs11Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Source")
            .field("label", &self.label)
            .field("slot", &self.slot.lock().unwrap_or_else(PoisonError::into_inner).id())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Source {
    /// Loads the PKCS#11 module at `module`, finds the token labelled `token_label` and logs in
    /// as its user.
    ///
    /// Tokens are found by label because slot ids are not stable (SoftHSM makes them up from the
    /// serial number). The PIN is kept (zeroized when the source is dropped) to log in again
    /// after the HSM dropped the session.
    ///
    /// A module is loaded and initialised once per process and then shared by every source on
    /// it. Login state is per token and process too, so a second source on a token that is
    /// already logged in shares that login (and the token does not check its PIN again).
    pub fn open(module: impl AsRef<Path>, token_label: &str, pin: &HsmPin) -> Result<Self, HsmError> {
        let ctx = context(module.as_ref())?;
        let label = token_label.trim_end().to_owned();
        let slot = find_token(&ctx, &label)?;
        // Read-write: kept material is a token object.
        let session = ctx.open_rw_session(slot).map_err(pkcs11("C_OpenSession"))?;
        login(&session, &label, pin)?;
        tracing::info!(token = %label, slot = slot.id(), "logged in to PKCS#11 token");
        Ok(Self {
            name: format!("pkcs11 token {label:?}"),
            label,
            ctx,
            slot: Mutex::new(slot),
            pin: HsmPin::new(pin.expose()),
            session: Mutex::new(Some(session)),
            immutable_kept_objects: OnceLock::new(),
            supported: OnceLock::new(),
            wrap_with_trusted: OnceLock::new(),
        })
    }

    /// Whether this token lets kept material be `CKA_WRAP_WITH_TRUSTED` (probed once: can a
    /// user session create a `CKA_TRUSTED` public key?).
    pub fn wrap_with_trusted(&self) -> WrapWithTrusted {
        *self.wrap_with_trusted.get_or_init(|| {
            let session = match self.session() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(token = %self.label, error = %e, "cannot probe CKA_TRUSTED: kept material is not wrap-with-trusted");
                    return WrapWithTrusted::Unsupported;
                }
            };
            let probe = session.create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Wrap(true),
                Attribute::Trusted(true),
                Attribute::Modulus(vec![0xc5; 256]),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            ]);
            let answer = match probe {
                Ok(handle) => {
                    let _ = session.destroy_object(handle);
                    WrapWithTrusted::Used
                }
                Err(e) => {
                    tracing::info!(token = %self.label, error = %e, "token refuses CKA_TRUSTED to the user: kept material is not wrap-with-trusted");
                    WrapWithTrusted::Unsupported
                }
            };
            answer
        })
    }

    /// [`KeyMaterialSource::generate_and_wrap`] plus a key check value computed by the token with
    /// the same in-HSM key, for tests that play KMS. Production code uses `generate_and_wrap`.
    pub fn generate_and_wrap_with_check_block(
        &self,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<CheckedWrap, HsmError> {
        let (wrapped, check_value) = self.wrap_in_token(kms_public_key_der, spec, algorithm, true)?;
        let check_value = check_value.expect("asked for a check value");
        Ok(CheckedWrap { wrapped, check_value })
    }

    /// The logged-in read-write session, renewed first when the token closed it or logged it
    /// out (see the type's docs).
    fn session(&self) -> Result<LiveSession<'_>, HsmError> {
        // A panic while holding the lock cannot leave the session half-way through an
        // operation: every PKCS#11 call used here is a single, complete call.
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let live = match guard.as_ref().map(Session::get_session_info) {
            Some(Ok(info)) => info.session_state() == SessionState::RwUser,
            Some(Err(e)) => {
                tracing::warn!(token = %self.label, error = %e, "the HSM session is gone");
                false
            }
            None => false,
        };
        if !live {
            // Closed first: the token may hand the same handle number to the new session.
            *guard = None;
            *guard = Some(self.reopen()?);
        }
        Ok(LiveSession(guard))
    }

    /// A new read-write session, logged in; the token is found again by its label if its
    /// slot went away (an HSM failover may renumber slots).
    fn reopen(&self) -> Result<Session, HsmError> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let session = match self.ctx.open_rw_session(*slot) {
            Ok(s) => s,
            Err(CkError::Pkcs11(RvError::SlotIdInvalid | RvError::TokenNotPresent | RvError::DeviceRemoved, _)) => {
                *slot = find_token(&self.ctx, &self.label)?;
                self.ctx.open_rw_session(*slot).map_err(pkcs11("C_OpenSession"))?
            }
            Err(e) => return Err(pkcs11("C_OpenSession")(e)),
        };
        login(&session, &self.label, &self.pin)?;
        tracing::info!(token = %self.label, slot = slot.id(), "opened a new HSM session and logged in again");
        Ok(session)
    }

    /// Runs `op` on the live session; if it fails because the session went away meanwhile,
    /// once more on a new one. Every `op` here finds before it creates, so the second run never
    /// makes a second object.
    fn with_live<R>(&self, op: impl Fn(&Session) -> Result<R, HsmError>) -> Result<R, HsmError> {
        let first = {
            let session = self.session()?;
            op(&session)
        };
        match first {
            Err(e) if session_lost(&e) => {
                tracing::warn!(token = %self.label, error = %e, "the HSM dropped the session during the operation: retrying once on a new session");
                *self.session.lock().unwrap_or_else(PoisonError::into_inner) = None;
                let session = self.session()?;
                op(&session)
            }
            other => other,
        }
    }

    /// The slot the token is in now.
    fn slot(&self) -> Slot {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the source's logged-in session (tests inspect objects through it).
    #[cfg(test)]
    pub(super) fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        f(&self.session().expect("a live session"))
    }
}

/// Whether a failure means the session (or its login) is gone, so a new one may succeed:
/// after an HSM failover, an idle timeout or a network drop.
fn session_lost(e: &HsmError) -> bool {
    matches!(
        e,
        HsmError::Pkcs11 {
            source: CkError::Pkcs11(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::TokenNotPresent
                    | RvError::UserNotLoggedIn
                    | RvError::CryptokiNotInitialized,
                _
            ),
            ..
        }
    )
}
