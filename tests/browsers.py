"""Helpers for the browser tests: waiting on a page, clicking what it redraws, typing, reading,
logging in."""

from chatroom.testing import WAIT, eventually


def until(driver, condition, what):
    """condition(driver), once it is true (bounded). An element the page redrew between finding
    it and reading it is looked for again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def check():
        try:
            return condition(driver)
        except (StaleElementReferenceException, NoSuchElementException):
            return None

    return eventually(check, timeout=WAIT * 2, interval=0.05, what=what)


def click(driver, css):
    """Click what css selects, finding it again if the page re-drew it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d):
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    until(driver, clicked, f"a click on {css}")


def log_in(driver, url, name):
    from selenium.webdriver.common.by import By

    driver.get(url)
    until(driver, lambda d: d.find_element(By.ID, "status").text == "connected", "the connection")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "login").click()
    until(driver, lambda d: d.find_element(By.ID, "me").text == name, "the login")
    assert not driver.find_element(By.ID, "login-form").is_displayed()


def text_of(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def type_into(driver, element_id, *keys):
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(*keys)
