//! The token: the PKCS#11 module (loaded and initialised once per process), the slot found by
//! label, the user login. The PIN is used for the login only, never kept or formatted.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::rotation::hsm::{HsmError, HsmPin};

/// The process-wide context for `module`, loaded and initialised on first use.
///
/// PKCS#11 allows one `C_Initialize` per process, and unloading an initialised module without
/// `C_Finalize` (which would end every other source's sessions) is not safe either, so contexts
/// are kept for the life of the process.
pub(super) fn context(module: &Path) -> Result<Pkcs11, HsmError> {
    static CONTEXTS: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut contexts = CONTEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ctx)) = contexts.iter().find(|(path, _)| path == module) {
        return Ok(ctx.clone());
    }
    let load_error = |reason: String| HsmError::ModuleLoad { path: module.display().to_string(), reason };
    let ctx = Pkcs11::new(module).map_err(|e| load_error(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Already initialised by other code in this process: use it as it is.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_error(format!("C_Initialize failed: {e}"))),
    }
    contexts.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

pub(super) fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let mut available = Vec::new();
    let mut matching = Vec::new();
    for slot in ctx.get_slots_with_initialized_token().map_err(pkcs11("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(pkcs11("C_GetTokenInfo"))?;
        if info.label() == label {
            matching.push(slot);
        }
        available.push(info.label().to_owned());
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound { label: label.to_owned(), available }),
        _ => Err(HsmError::TokenAmbiguous { label: label.to_owned(), count: matching.len() }),
    }
}

pub(super) fn login(session: &Session, label: &str, pin: &HsmPin) -> Result<(), HsmError> {
    // AuthPin is a secrecy::SecretString: this copy is zeroized when dropped too.
    let auth = AuthPin::from(pin.expose());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(HsmError::PinIncorrect { label: label.to_owned() }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked { label: label.to_owned() }),
        Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
            Err(HsmError::PinNotInitialized { label: label.to_owned() })
        }
        Err(e) => Err(pkcs11("C_Login")(e)),
    }
}

pub(super) fn pkcs11(operation: &'static str) -> impl Fn(CkError) -> HsmError {
    move |source| HsmError::Pkcs11 { operation, source }
}
